"""Mount volumes of clusters and jobs: resolving Azure-style references to batchai storage and file servers."""

from __future__ import annotations

import re
from typing import Any

from batchai.errors import InvalidInput
from batchai.ids import parse_child_id
from batchai.services.context import Ctx, find
from batchai.storage.base import Volume, VolumeKind, check_account_name, check_volume_name, clean_path
from batchai.store.tables import FileServer, ResourceGroup, StorageAccount, Workspace

_FILE_URL = re.compile(r"^https?://(?P<account>[a-z0-9]{3,24})\.file\.[^/]+/(?P<share>[^/?#]+)/?(?P<rest>[^?#]*)$")


def parse_file_url(url: str, target: str) -> tuple[str, str]:
    """``https://<account>.file.core.windows.net/<share>`` -> (account, share)."""
    match = _FILE_URL.match(url.strip())
    if not match:
        raise InvalidInput(
            f"'{url}' is not an Azure file share URL: expected https://<account>.file.core.windows.net/<share>.",
            code="InvalidAzureFileUrl",
            target=target,
        )
    return match["account"], match["share"]


def _require_volume(ctx: Ctx, volume: Volume, target: str) -> None:
    if find(ctx.session, StorageAccount, volume.account) is None:
        raise InvalidInput(
            f"The storage account '{volume.account}' was not found: create it with "
            f"'batchai storage account create -n {volume.account}'.",
            code="StorageAccountNotFound",
            target=target,
        )
    if not ctx.storage.volume_exists(volume):
        raise InvalidInput(
            f"The {volume.label} was not found in storage account '{volume.account}'.",
            code="ShareNotFound" if volume.kind is VolumeKind.SHARE else "ContainerNotFound",
            target=target,
        )


def file_server_row(ctx: Ctx, resource_id: str, target: str) -> FileServer:
    ref = parse_child_id(resource_id, "fileServers", target)
    query_group = find(ctx.session, ResourceGroup, ref.group, subscription=ref.subscription)
    workspace = find(ctx.session, Workspace, ref.workspace, group_id=query_group.id) if query_group else None
    row = find(ctx.session, FileServer, ref.name, workspace_id=workspace.id) if workspace else None
    if row is None:
        raise InvalidInput(f"The file server '{resource_id}' was not found.", code="FileServerNotFound", target=target)
    return row


def normalise(ctx: Ctx, volumes: dict[str, Any], where: str) -> dict[str, Any]:
    """Check every reference of a ``mountVolumes`` (wire JSON) and fill what Azure derived.

    Returns the volumes with ``accountName`` taken from each file share URL where it was left out.
    """
    seen: set[str] = set()

    def mount_path(value: str, target: str) -> None:
        path = clean_path(value, allow_root=False)
        if path.split("/")[0] in seen:
            raise InvalidInput(f"Two volumes are mounted at '{value}'.", target=target)
        seen.add(path.split("/")[0])

    out = dict(volumes)
    shares = []
    for i, share in enumerate(volumes.get("azureFileShares") or []):
        target = f"{where}.azureFileShares[{i}]"
        account, name = parse_file_url(share["azureFileUrl"], target + ".azureFileUrl")
        if share.get("accountName") and share["accountName"] != account:
            raise InvalidInput(
                f"accountName '{share['accountName']}' does not match the account of {share['azureFileUrl']}.",
                target=target + ".accountName",
            )
        check_volume_name(VolumeKind.SHARE, name, target + ".azureFileUrl")
        _require_volume(ctx, Volume(account, VolumeKind.SHARE, name), target)
        mount_path(share["relativeMountPath"], target + ".relativeMountPath")
        # With Azure's default modes, as it showed them.
        shares.append({"fileMode": "0777", "directoryMode": "0777", **share, "accountName": account})
    if shares:
        out["azureFileShares"] = shares
    for i, blob in enumerate(volumes.get("azureBlobFileSystems") or []):
        target = f"{where}.azureBlobFileSystems[{i}]"
        check_account_name(blob["accountName"], target + ".accountName")
        check_volume_name(VolumeKind.CONTAINER, blob["containerName"], target + ".containerName")
        _require_volume(ctx, Volume(blob["accountName"], VolumeKind.CONTAINER, blob["containerName"]), target)
        mount_path(blob["relativeMountPath"], target + ".relativeMountPath")
    for i, server in enumerate(volumes.get("fileServers") or []):
        target = f"{where}.fileServers[{i}]"
        file_server_row(ctx, server["fileServer"]["id"], target + ".fileServer.id")
        if server.get("sourceDirectory"):
            clean_path(server["sourceDirectory"].lstrip("/"))
        mount_path(server["relativeMountPath"], target + ".relativeMountPath")
    for i, unmanaged in enumerate(volumes.get("unmanagedFileSystems") or []):
        mount_path(unmanaged["relativeMountPath"], f"{where}.unmanagedFileSystems[{i}].relativeMountPath")
    return out
