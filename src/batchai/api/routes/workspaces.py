"""Workspaces and experiments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from batchai.api import render
from batchai.api.deps import api_version, delete_in_two_steps, page, respond, run
from batchai.api.routes import BATCHAI, EXPERIMENT, SUB, WORKSPACE
from batchai.models.resources import WorkspaceInput, WorkspacePatch
from batchai.services import experiments, workspaces

router = APIRouter(dependencies=[Depends(api_version)], tags=["workspaces"])


@router.put(WORKSPACE)
def put_workspace(sub: str, group: str, workspace: str, body: WorkspaceInput, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.workspace(workspaces.put(ctx, sub, group, workspace, body)[0])))


@router.patch(WORKSPACE)
def patch_workspace(sub: str, group: str, workspace: str, body: WorkspacePatch, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.workspace(workspaces.patch(ctx, sub, group, workspace, body))))


@router.get(WORKSPACE)
def get_workspace(sub: str, group: str, workspace: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.workspace(workspaces.get(ctx, sub, group, workspace))))


@router.get(BATCHAI + "/workspaces")
def list_workspaces_in_group(sub: str, group: str, request: Request) -> Any:
    rows = run(request, lambda ctx: [render.workspace(r) for r in workspaces.list_in_group(ctx, sub, group)])
    return page(request, rows)


@router.get(SUB + "/providers/Microsoft.BatchAI/workspaces")
def list_workspaces(sub: str, request: Request) -> Any:
    rows = run(request, lambda ctx: [render.workspace(r) for r in workspaces.list_in_subscription(ctx, sub)])
    return page(request, rows)


@router.delete(WORKSPACE)
def delete_workspace(sub: str, group: str, workspace: str, request: Request) -> Response:
    deleted = delete_in_two_steps(
        request,
        lambda ctx: workspaces.prepare_delete(ctx, sub, group, workspace),
        lambda ctx: workspaces.delete(ctx, sub, group, workspace),
    )
    return Response(status_code=200 if deleted else 204)


@router.put(EXPERIMENT)
def put_experiment(sub: str, group: str, workspace: str, experiment: str, request: Request) -> Any:
    return respond(
        run(request, lambda ctx: render.experiment(experiments.put(ctx, sub, group, workspace, experiment)[0]))
    )


@router.get(EXPERIMENT)
def get_experiment(sub: str, group: str, workspace: str, experiment: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.experiment(experiments.get(ctx, sub, group, workspace, experiment))))


@router.get(WORKSPACE + "/experiments")
def list_experiments(sub: str, group: str, workspace: str, request: Request) -> Any:
    rows = run(
        request,
        lambda ctx: [render.experiment(r) for r in experiments.list_in_workspace(ctx, sub, group, workspace)],
    )
    return page(request, rows)


@router.delete(EXPERIMENT)
def delete_experiment(sub: str, group: str, workspace: str, experiment: str, request: Request) -> Response:
    deleted = delete_in_two_steps(
        request,
        lambda ctx: experiments.prepare_delete(ctx, sub, group, workspace, experiment),
        lambda ctx: experiments.delete(ctx, sub, group, workspace, experiment),
    )
    return Response(status_code=200 if deleted else 204)
