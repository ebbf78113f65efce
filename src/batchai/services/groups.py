"""Resource groups (ARM's own resource): deleting one deletes everything in it, as ARM does."""

from __future__ import annotations

from sqlalchemy import select

from batchai.errors import InvalidInput
from batchai.ids import GROUP_NAME, check_name
from batchai.models.resources import ResourceGroupInput, ResourceGroupPatch
from batchai.services.context import Ctx, find, find_to_delete, mark_deleting, refuse_if_deleting, require
from batchai.store.tables import ResourceGroup


def get(ctx: Ctx, sub: str, name: str) -> ResourceGroup:
    return require(ctx.session, ResourceGroup, name, "resource group", code="ResourceGroupNotFound", subscription=sub)


def put(ctx: Ctx, sub: str, name: str, body: ResourceGroupInput) -> tuple[ResourceGroup, bool]:
    """Create the group, or update its tags; a location change is refused as ARM does."""
    check_name("resource group", name, GROUP_NAME)
    row = find(ctx.session, ResourceGroup, name, subscription=sub)
    if row is not None:
        refuse_if_deleting(row, "resource group")
        if body.location.lower() != row.location.lower():
            raise InvalidInput(
                f"Invalid resource group location '{body.location}'. The Resource group already exists in "
                f"location '{row.location}'.",
                code="InvalidResourceGroupLocation",
                target="location",
            )
        row.tags = dict(body.tags or {})
        return row, False
    now = ctx.clock()
    row = ResourceGroup(
        subscription=sub,
        name=name,
        key=name.lower(),
        location=body.location,
        tags=dict(body.tags or {}),
        created_at=now,
        provisioning_state="Succeeded",
        provisioning_state_time=now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    return row, True


def patch(ctx: Ctx, sub: str, name: str, body: ResourceGroupPatch) -> ResourceGroup:
    row = get(ctx, sub, name)
    refuse_if_deleting(row, "resource group")
    if body.tags is not None:
        row.tags = dict(body.tags)
    return row


def list_all(ctx: Ctx, sub: str) -> list[ResourceGroup]:
    query = select(ResourceGroup).filter_by(subscription=sub).order_by(ResourceGroup.key)
    return list(ctx.session.scalars(query))


def prepare_delete(ctx: Ctx, sub: str, name: str) -> list[int]:
    from batchai.services import workspaces

    row = find(ctx.session, ResourceGroup, name, subscription=sub)
    if row is None:
        return []
    mark_deleting(ctx, row)
    return [i for w in row.workspaces for i in workspaces.stop_for_delete(ctx, w)]


def delete(ctx: Ctx, sub: str, name: str) -> bool:
    """Delete the group with all it holds; False if there was none. Stored files go after the commit."""
    row = find_to_delete(ctx.session, ResourceGroup, name, subscription=sub)
    if row is None:
        return False
    delete_row(ctx, row)
    return True


def delete_row(ctx: Ctx, row: ResourceGroup) -> None:
    from batchai.services import storage_accounts, workspaces

    for workspace in list(row.workspaces):
        workspaces.delete_row(ctx, workspace)
    for account in list(row.storage_accounts):
        storage_accounts.delete_row(ctx, account)
    ctx.session.delete(row)
