"""File servers. On batchai a file server is a directory on the server's host that jobs and clusters
mount (``fileServers`` mount volumes); its data disks and VM size are recorded, not provisioned."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from batchai.errors import Conflict, InvalidInput
from batchai.ids import check_name
from batchai.models.resources import FileServerInput
from batchai.services import workspaces
from batchai.services.context import Ctx, find, find_to_delete, require
from batchai.store.tables import FileServer

READ_ONLY = {"mountSettings", "provisioningStateTransitionTime", "creationTime", "provisioningState"}


def get(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> FileServer:
    row = workspaces.child(ctx, FileServer, sub, group, workspace, name)
    if row is not None:
        return row
    parent = workspaces.get(ctx, sub, group, workspace)  # says which part of the path is missing
    return require(ctx.session, FileServer, name, "file server", workspace_id=parent.id)


def put(ctx: Ctx, sub: str, group: str, workspace: str, name: str, body: FileServerInput) -> tuple[FileServer, bool]:
    check_name("file server", name)
    parent = workspaces.get(ctx, sub, group, workspace)
    workspaces.refuse_if_being_deleted(parent)
    spec: dict[str, Any] = {k: v for k, v in body.properties.wire().items() if k not in READ_ONLY}
    vm_size = (body.properties.vm_size or "").strip()
    if not vm_size:
        raise InvalidInput("vmSize is required (for example STANDARD_D2_V2).", target="properties.vmSize")
    spec["vmSize"] = vm_size.upper()  # as Azure showed it
    if body.properties.ssh_configuration is None:
        raise InvalidInput(
            "sshConfiguration.userAccountSettings.adminUserName is required.",
            target="properties.sshConfiguration",
        )
    if body.properties.data_disks is None:
        raise InvalidInput(
            "dataDisks (diskCount, diskSizeInGB, storageAccountType) is required.",
            target="properties.dataDisks",
        )
    row = find(ctx.session, FileServer, name, workspace_id=parent.id)
    if row is not None:
        if row.spec != spec:
            raise Conflict(
                f"The file server '{name}' exists with other properties.",
                code="PropertyChangeNotAllowed",
                target=name,
            )
        return row, False
    now = ctx.clock()
    row = FileServer(
        workspace_id=parent.id,
        name=name,
        key=name.lower(),
        spec=spec,
        created_at=now,
        provisioning_state="succeeded",
        provisioning_state_time=now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    if ctx.runtime is not None:  # data a deleted file server left under this id belongs to nobody
        ctx.runtime.release_file_server(row.id)
    return row, True


def list_in_workspace(ctx: Ctx, sub: str, group: str, workspace: str) -> list[FileServer]:
    parent = workspaces.get(ctx, sub, group, workspace)
    query = select(FileServer).filter_by(workspace_id=parent.id).order_by(FileServer.key)
    return list(ctx.session.scalars(query))


def delete(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> bool:
    parent = workspaces.get(ctx, sub, group, workspace)
    row = find_to_delete(ctx.session, FileServer, name, workspace_id=parent.id)
    if row is None:
        return False
    file_server_id, runtime = row.id, ctx.runtime
    ctx.session.delete(row)
    if runtime is not None:
        ctx.after_commit.append(lambda: runtime.release_file_server(file_server_id))
    return True
