"""The storage backend contract. A backend stores file shares and blob containers of storage accounts.

A *volume* is one share or one container: ``Volume(account, kind, name)``; account and volume names follow
the rules they were created by (``check_account_name``, ``check_volume_name``). Paths inside a volume are
relative, ``/``-separated; every backend refuses (``InvalidPath``, through ``volume_path``) a path that is
absolute, has a ``..`` segment, a name too long for a file system, a name beginning with ``UPLOAD_PREFIX``
(kept for uploads under way), or (through a link) leads outside its volume. Writes are atomic: a reader
sees the old file or the whole new one, never a part. Deleting what is already gone is not an error where
noted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from batchai.errors import InvalidInput, NotFound
from batchai.ids import SHARE_NAME, STORAGE_ACCOUNT_NAME, check_name

MAX_NAME_BYTES = 255  # one file or directory name (NAME_MAX)
MAX_PATH_BYTES = 2048  # a whole path in a volume (Azure Files' limit; well under PATH_MAX with the root)
# The storage account SKUs and kinds an account may be created with (names as Azure spells them).
SKUS = (
    "Standard_LRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Standard_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
    "Standard_GZRS",
    "Standard_RAGZRS",
)
KINDS = ("StorageV2", "Storage", "BlobStorage", "FileStorage", "BlockBlobStorage")
UPLOAD_PREFIX = ".batchai-upload-"  # temporary files of uploads under way; no stored name may begin so


class VolumeKind(StrEnum):
    SHARE = "share"
    CONTAINER = "container"


KIND_LABELS = {VolumeKind.SHARE: "file share", VolumeKind.CONTAINER: "container"}


def check_account_name(account: str, target: str | None = None) -> str:
    """Refuse a storage account name that ``storage account create`` would refuse (``InvalidResourceName``)."""
    return check_name("storage account", account, STORAGE_ACCOUNT_NAME, target)


def check_volume_name(kind: VolumeKind, name: str, target: str | None = None) -> str:
    """Refuse a share or container name that creating it would refuse: never ``.``, ``..`` or a path."""
    return check_name(KIND_LABELS[kind], name, SHARE_NAME, target)


@dataclass(frozen=True)
class Volume:
    account: str
    kind: VolumeKind
    name: str

    @property
    def label(self) -> str:
        return f"{KIND_LABELS[self.kind]} '{self.name}'"


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

    @classmethod
    def of(cls, info: os.stat_result, path: str) -> Entry | None:
        """The entry of a file or a directory from its stat; None for anything else (a FIFO, a socket, a
        device, a link), which is never listed nor served."""
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return None
        directory = stat.S_ISDIR(info.st_mode)
        return cls(path, directory, 0 if directory else info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))


class InvalidPath(InvalidInput):
    code = "InvalidPath"


class VolumeNotFound(NotFound):
    code = "ShareNotFound"


class PathNotFound(NotFound):
    code = "ResourceNotFound"


def shown(path: str) -> str:
    """``path`` printable: bytes that are not UTF-8 (a local file's name) as ``\\xff``."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return ascii(path)[1:-1]


def clean_path(path: str, *, allow_root: bool = True) -> str:
    """Normalise a relative path (``a//b/`` -> ``a/b``); refuse absolute paths, ``..`` and names no file system
    takes (a NUL or ``\\``, over ``MAX_NAME_BYTES``, a path over ``MAX_PATH_BYTES``)."""
    if "\x00" in path or "\\" in path:
        raise InvalidPath(f"The path '{shown(path)}' has a forbidden character ('\\' or NUL).", target="path")
    if path.startswith("/"):
        raise InvalidPath(f"The path '{shown(path)}' is absolute; give a path relative to its folder.", target="path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidPath(
            f"The path '{shown(path)}' leaves the folder it is relative to ('..' is not allowed).", target="path"
        )
    try:
        sizes = [len(p.encode("utf-8", "surrogateescape")) for p in parts]
    except UnicodeEncodeError as exc:
        raise InvalidPath(f"The path '{shown(path)}' is not valid UTF-8.", target="path") from exc
    if any(size > MAX_NAME_BYTES for size in sizes):
        raise InvalidPath(f"The path '{shown(path)}' has a name longer than {MAX_NAME_BYTES} bytes.", target="path")
    if sum(sizes) + len(parts) - 1 > MAX_PATH_BYTES:
        raise InvalidPath(f"The path is longer than {MAX_PATH_BYTES} bytes.", target="path")
    if not parts and not allow_root:
        raise InvalidPath("A file path is required.", target="path")
    return "/".join(parts)


def volume_path(path: str, *, allow_root: bool = True) -> str:
    """``clean_path`` for a path in a share or container, which must also be UTF-8 and use no name beginning
    with ``UPLOAD_PREFIX``: the rule every backend applies, and the CLI before it sends anything."""
    rel = clean_path(path, allow_root=allow_root)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPath(f"The path '{shown(path)}' is not valid UTF-8.", target="path") from exc
    if any(part.startswith(UPLOAD_PREFIX) for part in rel.split("/")):
        raise InvalidPath(
            f"The path '{shown(path)}' uses a reserved name: names beginning with '{UPLOAD_PREFIX}' are kept for "
            "uploads under way.",
            target="path",
        )
    return rel


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

    def names(self, volume: Volume, path: str = "") -> list[str]:
        """The names directly in a directory, sorted, without looking at each (a page of a long listing is then
        ``stat``-ed alone; a name may turn out to be neither a file nor a directory); raises PathNotFound."""

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

    def sweep_uploads(self, before: float) -> int:
        """Remove the temporary files of uploads begun before ``before`` (epoch seconds): what a server stopped
        in the middle of an upload left. Called once at start-up (nothing older is still being written, since
        one server runs per home); returns how many went."""

    def local_path(self, volume: Volume, path: str = "") -> Path | None:
        """A path on this host that shows the volume's files (to mount on local nodes), if there is one."""


def size_of(handle: BinaryIO) -> int:
    """The size of an open file (of what was opened: a file replaced meanwhile does not change it)."""
    position = handle.tell()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(position)
    return size


def iter_file(handle: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Read an open file in chunks, closing it at the end."""
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk
