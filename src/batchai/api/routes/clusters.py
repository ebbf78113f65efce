"""Clusters and file servers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from batchai.api import render
from batchai.api.deps import api_version, delete_in_two_steps, page, respond, run, run_on_node
from batchai.api.file_items import signed_files
from batchai.api.routes import WORKSPACE
from batchai.models.resources import ClusterInput, ClusterPatch, FileServerInput, NodeCommandInput
from batchai.services import clusters, file_servers, job_files
from batchai.services.context import Ctx

router = APIRouter(dependencies=[Depends(api_version)], tags=["clusters"])
CLUSTER = WORKSPACE + "/clusters/{cluster}"
FILE_SERVER = WORKSPACE + "/fileServers/{server}"


@router.put(CLUSTER)
def put_cluster(sub: str, group: str, workspace: str, cluster: str, body: ClusterInput, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.cluster(clusters.put(ctx, sub, group, workspace, cluster, body)[0])))


@router.patch(CLUSTER)
def patch_cluster(sub: str, group: str, workspace: str, cluster: str, body: ClusterPatch, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.cluster(clusters.patch(ctx, sub, group, workspace, cluster, body))))


@router.get(CLUSTER)
def get_cluster(sub: str, group: str, workspace: str, cluster: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.cluster(clusters.get(ctx, sub, group, workspace, cluster))))


@router.get(WORKSPACE + "/clusters")
def list_clusters(sub: str, group: str, workspace: str, request: Request) -> Any:
    rows = run(
        request,
        lambda ctx: [render.cluster(r) for r in clusters.list_in_workspace(ctx, sub, group, workspace)],
    )
    return page(request, rows)


@router.post(CLUSTER + "/listRemoteLoginInformation")
@router.get(CLUSTER + "/listRemoteLoginInformation", include_in_schema=False)  # nextLink, by GET
def cluster_remote_login(sub: str, group: str, workspace: str, cluster: str, request: Request) -> Any:
    """The cluster's nodes: local nodes are this host; Ray nodes their machines."""
    logins = run(request, lambda ctx: clusters.remote_logins(clusters.get(ctx, sub, group, workspace, cluster)))
    return page(request, logins)


@router.post(CLUSTER + "/execOnNode")
def cluster_exec_on_node(
    sub: str, group: str, workspace: str, cluster: str, body: NodeCommandInput, request: Request
) -> Any:
    """Run a command on a node of the cluster and wait for it: what ``az batchai cluster node exec`` ran over
    SSH. A batchai extension."""
    target = run(
        request, lambda ctx: clusters.command_target(clusters.get(ctx, sub, group, workspace, cluster), body.node_id)
    )
    return run_on_node(request, target, body)


@router.post(CLUSTER + "/listSetupOutputFiles")
def list_setup_output_files(
    sub: str,
    group: str,
    workspace: str,
    cluster: str,
    request: Request,
    directory: str = ".",
    linkexpiryinminutes: int = 60,
) -> Any:
    """The setup task's output (a folder per node) as File items with signed links: what ``az batchai cluster
    file list`` shows. A batchai extension: Batch AI's clients read it from the storage directly."""

    def folder_of(ctx: Ctx) -> job_files.Location | None:
        row = clusters.get(ctx, sub, group, workspace, cluster)
        return job_files.setup_output_of(row, clusters.setup_output_suffix(row))

    return signed_files(request, folder_of, directory, linkexpiryinminutes)


@router.delete(CLUSTER)
def delete_cluster(sub: str, group: str, workspace: str, cluster: str, request: Request) -> Response:
    deleted = delete_in_two_steps(
        request,
        lambda ctx: clusters.prepare_delete(ctx, sub, group, workspace, cluster),
        lambda ctx: clusters.delete(ctx, sub, group, workspace, cluster),
    )
    return Response(status_code=200 if deleted else 204)


@router.put(FILE_SERVER)
def put_file_server(sub: str, group: str, workspace: str, server: str, body: FileServerInput, request: Request) -> Any:
    return respond(
        run(request, lambda ctx: render.file_server(file_servers.put(ctx, sub, group, workspace, server, body)[0]))
    )


@router.get(FILE_SERVER)
def get_file_server(sub: str, group: str, workspace: str, server: str, request: Request) -> Any:
    return respond(run(request, lambda ctx: render.file_server(file_servers.get(ctx, sub, group, workspace, server))))


@router.get(WORKSPACE + "/fileServers")
def list_file_servers(sub: str, group: str, workspace: str, request: Request) -> Any:
    rows = run(
        request,
        lambda ctx: [render.file_server(r) for r in file_servers.list_in_workspace(ctx, sub, group, workspace)],
    )
    return page(request, rows)


@router.delete(FILE_SERVER)
def delete_file_server(sub: str, group: str, workspace: str, server: str, request: Request) -> Response:
    deleted = run(request, lambda ctx: file_servers.delete(ctx, sub, group, workspace, server))
    return Response(status_code=200 if deleted else 204)
