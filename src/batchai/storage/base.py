"""The storage backend contract. A backend stores file shares and blob containers of storage accounts.

A *volume* is one share or one container: ``Volume(account, kind, name)``. Paths inside a volume are
relative, ``/``-separated; every backend refuses (``InvalidPath``) a path that is absolute, has a ``..``
segment, or (through a link) leads outside its volume. Writes are atomic: a reader sees the old file or
the whole new one, never a part. Deleting what is already gone is not an error where noted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from batchai.errors import InvalidInput, NotFound


class VolumeKind(StrEnum):
    SHARE = "share"
    CONTAINER = "container"


@dataclass(frozen=True)
class Volume:
    account: str
    kind: VolumeKind
    name: str

    @property
    def label(self) -> str:
        return f"{'file share' if self.kind is VolumeKind.SHARE else 'container'} '{self.name}'"


@dataclass(frozen=True)
class Entry:
    """One file or directory in a volume; ``path`` is relative to the volume's root."""

    path: str
    is_directory: bool
    size: int
    modified: datetime

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class InvalidPath(InvalidInput):
    code = "InvalidPath"


class VolumeNotFound(NotFound):
    code = "ShareNotFound"


class PathNotFound(NotFound):
    code = "ResourceNotFound"


def clean_path(path: str, *, allow_root: bool = True) -> str:
    """Normalise a relative volume path (``a//b/`` -> ``a/b``); refuse absolute paths and ``..``."""
    if "\x00" in path or "\\" in path:
        raise InvalidPath(f"The path '{path}' has a forbidden character.", target="path")
    if path.startswith("/"):
        raise InvalidPath(
            f"The path '{path}' is absolute; give a path relative to the share or container.", target="path"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidPath(f"The path '{path}' leaves its share or container ('..' is not allowed).", target="path")
    if not parts and not allow_root:
        raise InvalidPath("A file path is required.", target="path")
    return "/".join(parts)


class StorageBackend(Protocol):
    """Where volumes live. Implementations: ``LocalStorage`` (a directory); object stores later."""

    def create_volume(self, volume: Volume) -> bool:
        """Create an empty volume; False if it existed (left as it was)."""

    def delete_volume(self, volume: Volume) -> bool:
        """Delete a volume and all its files; False if there was none (not an error)."""

    def delete_account(self, account: str) -> None:
        """Delete every volume of an account; idempotent."""

    def volume_exists(self, volume: Volume) -> bool: ...

    def list_volumes(self, account: str, kind: VolumeKind) -> list[str]: ...

    def list(self, volume: Volume, path: str = "", *, recursive: bool = False) -> list[Entry]:
        """Entries under a directory (``path`` must be a directory); raises PathNotFound."""

    def stat(self, volume: Volume, path: str) -> Entry:
        """The entry at ``path``; raises PathNotFound."""

    def make_directory(self, volume: Volume, path: str) -> bool:
        """Create a directory and its parents; False if it existed. A file in the way is InvalidPath."""

    def remove(self, volume: Volume, path: str, *, recursive: bool = False) -> bool:
        """Remove a file, or a directory (non-empty ones only when ``recursive``); False if absent."""

    async def write(self, volume: Volume, path: str, chunks: AsyncIterator[bytes]) -> Entry:
        """Stream ``chunks`` into ``path`` (parents created) and publish it atomically when complete.

        If the stream breaks, nothing is published and no partial file remains.
        """

    def open(self, volume: Volume, path: str) -> BinaryIO:
        """Open a file for reading; raises PathNotFound, or InvalidPath for a directory."""

    def local_path(self, volume: Volume, path: str = "") -> Path | None:
        """A path on this host that shows the volume's files (to mount on local nodes), if there is one."""


def iter_file(handle: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Read an open file in chunks, closing it at the end."""
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk
