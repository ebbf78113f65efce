"""Storage accounts: named holders of file shares and blob containers, unique on the server (as Azure's
are worldwide), since job.json files name them without a group. Deleting one deletes its data."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from sqlalchemy import select

from batchai.errors import Conflict, InvalidInput
from batchai.ids import STORAGE_ACCOUNT_NAME, check_name
from batchai.models.resources import StorageAccountInput
from batchai.services import groups
from batchai.services.context import Ctx, find, find_to_delete, refuse_if_deleting, require
from batchai.storage.base import KINDS, SKUS
from batchai.store.tables import ResourceGroup, StorageAccount


def _one_of(value: str, choices: tuple[str, ...], target: str) -> str:
    """``value`` spelled as Azure spells it (ARM matches these names case-insensitively)."""
    match = next((c for c in choices if c.lower() == value.lower()), None)
    if match is None:
        raise InvalidInput(f"'{value}' is not a valid {target}: use one of {', '.join(choices)}.", target=target)
    return match


def get(ctx: Ctx, sub: str, group: str, name: str) -> StorageAccount:
    parent = groups.get(ctx, sub, group)
    return require(ctx.session, StorageAccount, name, "storage account", group_id=parent.id)


def keys(ctx: Ctx, sub: str, group: str, name: str, secret: bytes) -> list[dict[str, Any]]:
    """The account's two access keys, as Azure lists them (``listKeys``): derived from the server's secret, so
    that they stay the same and name this account only. Scripts pass them on (``accountKey``, connection
    strings); batchai's own data plane takes the server's token."""
    row = get(ctx, sub, group, name)
    return [
        {
            "keyName": key,
            "value": base64.b64encode(hmac.digest(secret, f"{row.key}/{key}".encode(), hashlib.sha512)).decode(),
            "permissions": "FULL",
        }
        for key in ("key1", "key2")
    ]


def by_name(ctx: Ctx, name: str) -> StorageAccount:
    """The account of that name in any group (data-plane calls name only the account)."""
    return require(ctx.session, StorageAccount, name, "storage account")


def put(ctx: Ctx, sub: str, group: str, name: str, body: StorageAccountInput) -> tuple[StorageAccount, bool]:
    check_name("storage account", name, STORAGE_ACCOUNT_NAME)
    parent = groups.get(ctx, sub, group)
    refuse_if_deleting(parent, "resource group")
    row = find(ctx.session, StorageAccount, name)
    if row is not None:
        if row.group_id != parent.id:
            raise Conflict(
                f"The storage account name '{name}' is already taken.",
                code="StorageAccountAlreadyTaken",
                target=name,
            )
        if body.location and body.location.lower() != row.location.lower():
            raise InvalidInput(
                f"The storage account '{name}' exists in location '{row.location}'; its location cannot change.",
                code="LocationCannotBeChanged",
                target="location",
            )
        if body.tags is not None:
            row.tags = dict(body.tags)
        return row, False
    now = ctx.clock()
    row = StorageAccount(
        group_id=parent.id,
        name=name,
        key=name,
        location=body.location or parent.location,
        sku=_one_of(body.sku.name, SKUS, "sku.name") if body.sku else "Standard_LRS",
        kind=_one_of(body.kind, KINDS, "kind") if body.kind else "StorageV2",
        tags=dict(body.tags or {}),
        created_at=now,
        provisioning_state="Succeeded",
        provisioning_state_time=now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    # Data left by an account of this name whose removal was cut short belongs to nobody.
    ctx.storage.delete_account(name)
    return row, True


def list_in_group(ctx: Ctx, sub: str, group: str) -> list[StorageAccount]:
    parent = groups.get(ctx, sub, group)
    query = select(StorageAccount).filter_by(group_id=parent.id).order_by(StorageAccount.key)
    return list(ctx.session.scalars(query))


def list_in_subscription(ctx: Ctx, sub: str) -> list[StorageAccount]:
    query = (
        select(StorageAccount)
        .join(ResourceGroup)
        .filter(ResourceGroup.subscription == sub)
        .order_by(StorageAccount.key)
    )
    return list(ctx.session.scalars(query))


def delete_row(ctx: Ctx, row: StorageAccount) -> None:
    name = row.name
    ctx.session.delete(row)
    ctx.after_commit.append(lambda: ctx.storage.delete_account(name))


def delete(ctx: Ctx, sub: str, group: str, name: str) -> bool:
    parent = groups.get(ctx, sub, group)
    row = find_to_delete(ctx.session, StorageAccount, name, group_id=parent.id)
    if row is None:
        return False
    delete_row(ctx, row)
    return True
