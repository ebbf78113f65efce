"""ARM resource groups (``/subscriptions/{sub}/resourcegroups/{group}``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from batchai.api import render
from batchai.api.deps import any_api_version, delete_in_two_steps, page, respond, run
from batchai.api.routes import GROUP, SUB
from batchai.models.resources import ResourceGroupInput, ResourceGroupPatch
from batchai.services import groups
from batchai.services.context import Ctx, find
from batchai.store.tables import ResourceGroup

router = APIRouter(dependencies=[Depends(any_api_version)], tags=["resource groups"])


@router.put(GROUP)
def put_group(sub: str, group: str, body: ResourceGroupInput, request: Request) -> Any:
    def work(ctx: Ctx) -> tuple[dict[str, Any], bool]:
        row, created = groups.put(ctx, sub, group, body)
        return render.group(row), created

    rendered, created = run(request, work)
    return respond(rendered, 201 if created else 200)


@router.get(GROUP)
def get_group(sub: str, group: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.group(groups.get(ctx, sub, group))))


@router.head(GROUP)
def group_exists(sub: str, group: str, request: Request) -> Response:
    found = run(request, lambda ctx: find(ctx.session, ResourceGroup, group, subscription=sub) is not None)
    return Response(status_code=204 if found else 404)


@router.patch(GROUP)
def patch_group(sub: str, group: str, body: ResourceGroupPatch, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.group(groups.patch(ctx, sub, group, body))))


@router.get(SUB + "/resourceGroups")
def list_groups(sub: str, request: Request) -> Any:
    return page(request, run(request, lambda ctx: [render.group(r) for r in groups.list_all(ctx, sub)]))


@router.delete(GROUP)
def delete_group(sub: str, group: str, request: Request) -> Response:
    deleted = delete_in_two_steps(
        request, lambda ctx: groups.prepare_delete(ctx, sub, group), lambda ctx: groups.delete(ctx, sub, group)
    )
    return Response(status_code=200 if deleted else 204)
