"""Jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from batchai.api import render
from batchai.api.deps import (
    api_version,
    delete_in_two_steps,
    page,
    path_names,
    respond,
    run,
    run_on_node,
    wait_jobs_ended,
)
from batchai.api.file_items import signed_files
from batchai.api.routes import EXPERIMENT
from batchai.errors import InvalidInput
from batchai.models.resources import JobInput, NodeCommandInput
from batchai.services import job_files, jobs
from batchai.services.context import Ctx, NodeTarget
from batchai.store.tables import Cluster, Job

router = APIRouter(dependencies=[Depends(api_version)], tags=["jobs"])
JOB = EXPERIMENT + "/jobs/{job}"


# The routes every job goes through (create, get, list) take the names in their path from the request
# (``path_names``) rather than as parameters: FastAPI examines each declared parameter again on every request.
@router.put(JOB)
def put_job(body: JobInput, request: Request) -> Any:
    sub, group, workspace, experiment, job = path_names(request)
    created = run(request, lambda ctx: render.job(*jobs.create(ctx, sub, group, workspace, experiment, job, body)))
    return respond(created)


@router.get(JOB)
def get_job(request: Request) -> Any:
    names = path_names(request)
    return respond(run(request, lambda ctx: render.job(*jobs.view(ctx, *names))))


@router.get(EXPERIMENT + "/jobs")
def list_jobs(request: Request) -> Any:
    def show(ctx: Ctx) -> list[dict[str, Any]]:
        views, parent = jobs.views_in_experiment(ctx, *path_names(request))
        return [render.job(view, parent) for view in views]

    return page(request, run(request, show))


@router.post(JOB + "/terminate")
def terminate_job(sub: str, group: str, workspace: str, experiment: str, job: str, request: Request) -> Response:
    """A long-running operation in Batch AI: done when the job has ended, so wait (bounded) for the engine."""
    job_id = run(request, lambda ctx: jobs.terminate(ctx, sub, group, workspace, experiment, job).id)
    wait_jobs_ended(request, [job_id], request.app.state.settings.grace_seconds + 15)
    return Response(status_code=200)


@router.delete(JOB)
def delete_job(sub: str, group: str, workspace: str, experiment: str, job: str, request: Request) -> Response:
    deleted = delete_in_two_steps(
        request,
        lambda ctx: jobs.prepare_delete(ctx, sub, group, workspace, experiment, job),
        lambda ctx: jobs.delete(ctx, sub, group, workspace, experiment, job),
    )
    return Response(status_code=200 if deleted else 204)


@router.post(JOB + "/listOutputFiles")
@router.get(JOB + "/listOutputFiles", include_in_schema=False)  # nextLink, by GET
def list_output_files(
    sub: str,
    group: str,
    workspace: str,
    experiment: str,
    job: str,
    request: Request,
    outputdirectoryid: str,
    directory: str = ".",
    linkexpiryinminutes: int = 60,
) -> Any:
    """Files of ``stdouterr`` or an output directory, each with a signed link valid for the given minutes."""
    return output_files(
        request,
        lambda ctx: jobs.get(ctx, sub, group, workspace, experiment, job),
        outputdirectoryid,
        directory,
        linkexpiryinminutes,
    )


def output_files(
    request: Request,
    find_job: Callable[[Ctx], Job],
    outputdirectoryid: str,
    directory: str,
    linkexpiryinminutes: int,
    with_is_directory: bool = False,
) -> JSONResponse:
    """A page of the File items of a job's output directory (``isDirectory`` added for the api versions before
    2018-05-01)."""

    def folder_of(ctx: Ctx) -> job_files.Location:
        row = find_job(ctx)
        cluster = ctx.session.get(Cluster, row.cluster_id) if row.cluster_id else None
        base = job_files.directory_of(row, cluster, outputdirectoryid)
        if base is None:
            raise InvalidInput(
                f"The files of '{outputdirectoryid}' are not where batchai can list them: it lists output on a "
                "share or container the job or its cluster mounts, and on absolute paths outside the nodes' mount "
                "roots; not on a file server, an unmanaged file system, or a mount path nothing is mounted at.",
                code="OutputDirectoryNotServed",
                target="outputdirectoryid",
            )
        return base

    return signed_files(request, folder_of, directory, linkexpiryinminutes, with_is_directory)


@router.post(JOB + "/execOnNode")
def job_exec_on_node(
    sub: str, group: str, workspace: str, experiment: str, job: str, body: NodeCommandInput, request: Request
) -> Any:
    """Run a command on a node of the job, in its working directory, and wait for it: what ``az batchai job
    node exec`` ran over SSH. A batchai extension."""

    def target(ctx: Ctx) -> NodeTarget:
        return jobs.command_target(ctx, jobs.get(ctx, sub, group, workspace, experiment, job), body.node_id)

    return run_on_node(request, run(request, target), body)


@router.post(JOB + "/listRemoteLoginInformation")
@router.get(JOB + "/listRemoteLoginInformation", include_in_schema=False)  # nextLink, by GET
def job_remote_login(sub: str, group: str, workspace: str, experiment: str, job: str, request: Request) -> Any:
    """The nodes the job runs or ran on."""
    logins = run(request, lambda ctx: jobs.remote_logins(ctx, jobs.get(ctx, sub, group, workspace, experiment, job)))
    return page(request, logins)
