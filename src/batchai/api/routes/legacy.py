"""Api versions 2017-09-01-preview and 2018-03-01: clusters, file servers and jobs directly in a resource
group (``P/clusters``, ``P/fileServers``, ``P/jobs``), served from the group's implicit workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from batchai.api import render
from batchai.api.deps import delete_in_two_steps, page, respond, run, wait_jobs_ended
from batchai.api.routes import BATCHAI, SUB
from batchai.api.routes.jobs import output_files
from batchai.errors import ApiError, InvalidInput
from batchai.models.legacy import LegacyClusterInput, LegacyClusterPatch, LegacyFileServerInput, LegacyJobInput
from batchai.models.resources import ClusterPatch, ClusterPatchProperties
from batchai.services import clusters, file_servers, jobs, legacy
from batchai.services.context import Ctx
from batchai.store.tables import Cluster, FileServer, Job

LEGACY_VERSIONS = frozenset({"2017-09-01-preview", "2018-03-01"})


async def legacy_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if version not in LEGACY_VERSIONS:
        raise InvalidInput(
            f"The api-version '{version}' is not supported here; clusters, file servers and jobs directly in a "
            f"resource group exist in {', '.join(sorted(LEGACY_VERSIONS))} (2018-05-01 puts them in workspaces).",
            code="InvalidApiVersionParameter" if version else "MissingApiVersionParameter",
            target="api-version",
        )
    return version


router = APIRouter(dependencies=[Depends(legacy_version)], tags=["api versions before 2018-05-01"])
CLUSTER = BATCHAI + "/clusters/{cluster}"
FILE_SERVER = BATCHAI + "/fileServers/{server}"
JOB = BATCHAI + "/jobs/{job}"


def _cluster(row: Cluster) -> dict[str, Any]:
    return legacy.as_legacy(render.cluster(row), "Clusters", row.workspace.location)


def _file_server(row: FileServer) -> dict[str, Any]:
    return legacy.as_legacy(render.file_server(row), "FileServers", row.workspace.location)


def _job(row: Job) -> dict[str, Any]:
    extras = row.notes.get("legacy") or {}
    out = legacy.as_legacy(render.job(row), "jobs", row.experiment.workspace.location, extras)
    out["properties"] = {
        **out["properties"],
        "experimentName": row.experiment.name,
        "priority": int(extras.get("priority", 0)),
    }
    return out


# -- clusters -------------------------------------------------------------------------------------------
@router.put(CLUSTER)
def put_cluster(sub: str, group: str, cluster: str, body: LegacyClusterInput, request: Request) -> Any:
    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.workspace(ctx, sub, group, create=True)
        row, _ = clusters.put(ctx, sub, group, legacy.WORKSPACE, cluster, legacy.cluster_input(body))
        return _cluster(row)

    return respond(run(request, work))


@router.patch(CLUSTER)
def patch_cluster(sub: str, group: str, cluster: str, body: LegacyClusterPatch, request: Request) -> Any:
    patch = ClusterPatch(properties=body.properties or ClusterPatchProperties())

    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.require_workspace(ctx, sub, group, "cluster", cluster)
        return _cluster(clusters.patch(ctx, sub, group, legacy.WORKSPACE, cluster, patch))

    return respond(run(request, work))


@router.get(CLUSTER)
def get_cluster(sub: str, group: str, cluster: str, request: Request) -> Any:
    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.require_workspace(ctx, sub, group, "cluster", cluster)
        return _cluster(clusters.get(ctx, sub, group, legacy.WORKSPACE, cluster))

    return respond(run(request, work))


@router.get(BATCHAI + "/clusters")
def list_clusters(sub: str, group: str, request: Request) -> Any:
    def work(ctx: Ctx) -> list[dict[str, Any]]:
        if legacy.workspace(ctx, sub, group) is None:
            return []
        return [_cluster(r) for r in clusters.list_in_workspace(ctx, sub, group, legacy.WORKSPACE)]

    return page(request, run(request, work))


@router.get(SUB + "/providers/Microsoft.BatchAI/clusters")
def list_clusters_in_subscription(sub: str, request: Request) -> Any:
    from sqlalchemy import select

    from batchai.store.tables import ResourceGroup, Workspace

    def work(ctx: Ctx) -> list[dict[str, Any]]:
        query = (
            select(Cluster)
            .join(Workspace)
            .join(ResourceGroup)
            .filter(ResourceGroup.subscription == sub, Workspace.key == legacy.WORKSPACE)
        )
        return [_cluster(r) for r in ctx.session.scalars(query.order_by(Cluster.id))]

    return page(request, run(request, work))


@router.delete(CLUSTER)
def delete_cluster(sub: str, group: str, cluster: str, request: Request) -> Response:
    def prepare(ctx: Ctx) -> list[int]:
        return (
            []
            if legacy.workspace(ctx, sub, group) is None
            else clusters.prepare_delete(ctx, sub, group, legacy.WORKSPACE, cluster)
        )

    def delete(ctx: Ctx) -> bool:
        return legacy.workspace(ctx, sub, group) is not None and clusters.delete(
            ctx, sub, group, legacy.WORKSPACE, cluster
        )

    return Response(status_code=200 if delete_in_two_steps(request, prepare, delete) else 204)


@router.post(CLUSTER + "/listRemoteLoginInformation")
@router.get(CLUSTER + "/listRemoteLoginInformation", include_in_schema=False)  # nextLink, by GET
def cluster_remote_login(sub: str, group: str, cluster: str, request: Request) -> Any:
    def work(ctx: Ctx) -> list[dict[str, Any]]:
        legacy.require_workspace(ctx, sub, group, "cluster", cluster)
        return clusters.remote_logins(clusters.get(ctx, sub, group, legacy.WORKSPACE, cluster))

    return page(request, run(request, work))


# -- file servers ---------------------------------------------------------------------------------------
@router.put(FILE_SERVER)
def put_file_server(sub: str, group: str, server: str, body: LegacyFileServerInput, request: Request) -> Any:
    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.workspace(ctx, sub, group, create=True)
        row, _ = file_servers.put(ctx, sub, group, legacy.WORKSPACE, server, legacy.file_server_input(body))
        return _file_server(row)

    return respond(run(request, work))


@router.get(FILE_SERVER)
def get_file_server(sub: str, group: str, server: str, request: Request) -> Any:
    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.require_workspace(ctx, sub, group, "file server", server)
        return _file_server(file_servers.get(ctx, sub, group, legacy.WORKSPACE, server))

    return respond(run(request, work))


@router.get(BATCHAI + "/fileServers")
def list_file_servers(sub: str, group: str, request: Request) -> Any:
    def work(ctx: Ctx) -> list[dict[str, Any]]:
        if legacy.workspace(ctx, sub, group) is None:
            return []
        return [_file_server(r) for r in file_servers.list_in_workspace(ctx, sub, group, legacy.WORKSPACE)]

    return page(request, run(request, work))


@router.delete(FILE_SERVER)
def delete_file_server(sub: str, group: str, server: str, request: Request) -> Response:
    def work(ctx: Ctx) -> bool:
        return legacy.workspace(ctx, sub, group) is not None and file_servers.delete(
            ctx, sub, group, legacy.WORKSPACE, server
        )

    return Response(status_code=200 if run(request, work) else 204)


# -- jobs -----------------------------------------------------------------------------------------------
@router.put(JOB)
def put_job(sub: str, group: str, job: str, body: LegacyJobInput, request: Request) -> Any:
    job_body, experiment, extras = legacy.job_input(body)

    def work(ctx: Ctx) -> dict[str, Any]:
        legacy.experiment_for(ctx, sub, group, experiment)
        existing = legacy.find_job(ctx, sub, group, job)
        target = existing.experiment.name if existing is not None else experiment
        try:
            jobs.create(ctx, sub, group, legacy.WORKSPACE, target, job, job_body)
        except ApiError as exc:  # name the cluster as the request did, not by its id in the implicit workspace
            if job_body.properties.cluster is not None:
                cluster = job_body.properties.cluster.id
                exc.message = exc.message.replace(cluster, legacy.legacy_id(cluster))
            raise
        row = jobs.get(ctx, sub, group, legacy.WORKSPACE, target, job)
        row.notes = {**row.notes, "legacy": extras}
        return _job(row)

    return respond(run(request, work))


@router.get(JOB)
def get_job(sub: str, group: str, job: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: _job(legacy.require_job(ctx, sub, group, job))))


@router.get(BATCHAI + "/jobs")
def list_jobs(sub: str, group: str, request: Request) -> Any:
    return page(request, run(request, lambda ctx: [_job(r) for r in legacy.jobs_in(ctx, sub, group)]))


@router.get(SUB + "/providers/Microsoft.BatchAI/jobs")
def list_jobs_in_subscription(sub: str, request: Request) -> Any:
    return page(request, run(request, lambda ctx: [_job(r) for r in legacy.jobs_in(ctx, sub, None)]))


@router.post(JOB + "/terminate")
def terminate_job(sub: str, group: str, job: str, request: Request) -> Response:
    def work(ctx: Ctx) -> int:
        row = legacy.require_job(ctx, sub, group, job)
        jobs.request_stop(ctx, row, "user")
        return row.id

    wait_jobs_ended(request, [run(request, work)], request.app.state.settings.grace_seconds + 15)
    return Response(status_code=200)


@router.delete(JOB)
def delete_job(sub: str, group: str, job: str, request: Request) -> Response:
    def prepare(ctx: Ctx) -> list[int]:
        row = legacy.find_job(ctx, sub, group, job)
        return jobs.stop_for_delete(ctx, row) if row else []

    def delete(ctx: Ctx) -> bool:
        row = legacy.find_job(ctx, sub, group, job)
        if row is None:
            return False
        jobs.delete_row(ctx, row)
        return True

    return Response(status_code=200 if delete_in_two_steps(request, prepare, delete) else 204)


@router.post(JOB + "/listOutputFiles")
@router.get(JOB + "/listOutputFiles", include_in_schema=False)  # nextLink, by GET
def list_output_files(
    sub: str,
    group: str,
    job: str,
    request: Request,
    outputdirectoryid: str,
    directory: str = ".",
    linkexpiryinminutes: int = 60,
) -> Any:
    return output_files(
        request,
        lambda ctx: legacy.require_job(ctx, sub, group, job),
        outputdirectoryid,
        directory,
        linkexpiryinminutes,
        with_is_directory=True,
    )


@router.post(JOB + "/listRemoteLoginInformation")
@router.get(JOB + "/listRemoteLoginInformation", include_in_schema=False)  # nextLink, by GET
def job_remote_login(sub: str, group: str, job: str, request: Request) -> Any:
    return page(request, run(request, lambda ctx: jobs.remote_logins(ctx, legacy.require_job(ctx, sub, group, job))))
