"""The storage data plane: shares, containers, directories, files and blobs of existing accounts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

from batchai.ids import SHARE_NAME, check_name
from batchai.services import storage_accounts
from batchai.services.context import Ctx
from batchai.storage.base import Entry, Volume, VolumeKind, VolumeNotFound

KIND_NAMES = {VolumeKind.SHARE: "file share", VolumeKind.CONTAINER: "container"}


def volume(ctx: Ctx, account: str, kind: VolumeKind, name: str, *, must_exist: bool = True) -> Volume:
    """The volume, checking that its account exists (and the volume too, unless creating it)."""
    row = storage_accounts.by_name(ctx, account)
    vol = Volume(row.name, kind, name)
    if must_exist and not ctx.storage.volume_exists(vol):
        raise VolumeNotFound(
            f"The {KIND_NAMES[kind]} '{name}' does not exist in storage account '{account}'.",
            code="ShareNotFound" if kind is VolumeKind.SHARE else "ContainerNotFound",
            target=name,
        )
    return vol


def create_volume(ctx: Ctx, account: str, kind: VolumeKind, name: str) -> bool:
    check_name(KIND_NAMES[kind], name, SHARE_NAME)
    return ctx.storage.create_volume(volume(ctx, account, kind, name, must_exist=False))


def delete_volume(ctx: Ctx, account: str, kind: VolumeKind, name: str) -> bool:
    return ctx.storage.delete_volume(volume(ctx, account, kind, name, must_exist=False))


def list_volumes(ctx: Ctx, account: str, kind: VolumeKind) -> list[str]:
    row = storage_accounts.by_name(ctx, account)
    return ctx.storage.list_volumes(row.name, kind)


def list_entries(ctx: Ctx, vol: Volume, path: str, recursive: bool) -> list[Entry]:
    return ctx.storage.list(vol, path, recursive=recursive)


async def upload(ctx: Ctx, vol: Volume, path: str, chunks: AsyncIterator[bytes]) -> Entry:
    return await ctx.storage.write(vol, path, chunks)


def open_file(ctx: Ctx, vol: Volume, path: str) -> BinaryIO:
    return ctx.storage.open(vol, path)
