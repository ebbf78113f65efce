"""The local-directory storage backend: ``{root}/{account}/{shares|containers}/{name}/...`` on this host."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from batchai.errors import InvalidInput
from batchai.storage.base import (
    UPLOAD_PREFIX,
    Entry,
    InvalidPath,
    PathNotFound,
    Volume,
    VolumeKind,
    VolumeNotFound,
    check_account_name,
    check_volume_name,
    volume_path,
)

_FOLDERS = {VolumeKind.SHARE: "shares", VolumeKind.CONTAINER: "containers"}


class LocalStorage:
    """Volumes as directories. Local nodes mount them by path, so jobs see uploads at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    # -- volumes -------------------------------------------------------------------------------------
    def _account_dir(self, account: str) -> Path:
        return self.root / check_account_name(account)

    def _volume_dir(self, volume: Volume) -> Path:
        """The volume's directory; a name that is not a valid one (``..``, ``.``) never becomes a path."""
        return self._account_dir(volume.account) / _FOLDERS[volume.kind] / check_volume_name(volume.kind, volume.name)

    def _existing_volume_dir(self, volume: Volume) -> Path:
        directory = self._volume_dir(volume)
        if not directory.is_dir():
            raise VolumeNotFound(
                f"The {volume.label} does not exist in storage account '{volume.account}'.",
                code="ShareNotFound" if volume.kind is VolumeKind.SHARE else "ContainerNotFound",
                target=volume.name,
            )
        return directory

    def create_volume(self, volume: Volume) -> bool:
        directory = self._volume_dir(volume)
        if directory.is_dir():
            return False
        directory.mkdir(parents=True)
        return True

    def delete_volume(self, volume: Volume) -> bool:
        directory = self._volume_dir(volume)
        if not directory.is_dir():
            return False
        shutil.rmtree(directory)
        return True

    def delete_account(self, account: str) -> None:
        shutil.rmtree(self._account_dir(account), ignore_errors=True)

    def volume_exists(self, volume: Volume) -> bool:
        try:
            return self._volume_dir(volume).is_dir()
        except InvalidInput:
            return False  # no volume has an invalid name

    def list_volumes(self, account: str, kind: VolumeKind) -> list[str]:
        folder = self._account_dir(account) / _FOLDERS[kind]
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    # -- paths ---------------------------------------------------------------------------------------
    def _resolve(self, volume: Volume, path: str, *, allow_root: bool = True) -> tuple[Path, str]:
        """The host path of ``path`` in ``volume``, refusing anything that leads outside it."""
        rel = volume_path(path, allow_root=allow_root)
        base = self._existing_volume_dir(volume)
        target = base / rel if rel else base
        real_base = os.path.realpath(base)
        real = os.path.realpath(target)
        if real != real_base and not real.startswith(real_base + os.sep):
            raise InvalidPath(f"The path '{path}' leads outside the {volume.label}.", target="path")
        return target, rel

    @staticmethod
    def _entry(path: Path, rel: str) -> Entry:
        st = path.stat()
        return Entry(
            path=rel,
            is_directory=path.is_dir(),
            size=0 if path.is_dir() else st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def stat(self, volume: Volume, path: str) -> Entry:
        target, rel = self._resolve(volume, path)
        if not target.exists():
            raise PathNotFound(f"'{rel}' was not found in the {volume.label}.", target=rel)
        return self._entry(target, rel)

    def list(self, volume: Volume, path: str = "", *, recursive: bool = False) -> list[Entry]:
        target, rel = self._resolve(volume, path)
        if not target.is_dir():
            raise PathNotFound(f"The directory '{rel}' was not found in the {volume.label}.", target=rel)
        base = self._existing_volume_dir(volume)
        real_base = os.path.realpath(base)
        out: list[Entry] = []
        children = sorted(target.rglob("*") if recursive else target.iterdir())
        for child in children:
            if child.name.startswith(UPLOAD_PREFIX):
                continue  # an upload still under way
            real = os.path.realpath(child)
            if real != real_base and not real.startswith(real_base + os.sep):
                continue  # a link that leaves the volume is not shown
            try:
                out.append(self._entry(child, child.relative_to(base).as_posix()))
            except FileNotFoundError:
                continue  # removed while listing
        return out

    def make_directory(self, volume: Volume, path: str) -> bool:
        target, rel = self._resolve(volume, path, allow_root=False)
        if target.is_dir():
            return False
        try:
            target.mkdir(parents=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidPath(f"Cannot create directory '{rel}': a file is in the way.", target=rel) from exc
        return True

    def remove(self, volume: Volume, path: str, *, recursive: bool = False) -> bool:
        rel = volume_path(path, allow_root=False)
        parent, _ = self._resolve(volume, rel.rpartition("/")[0])
        link = parent / rel.rpartition("/")[2]
        if link.is_symlink():  # a link is removed itself, wherever it points
            link.unlink()
            return True
        target, rel = self._resolve(volume, path, allow_root=False)
        if target.is_file():
            target.unlink()
            return True
        if not target.exists():
            return False
        if recursive:
            shutil.rmtree(target)
        else:
            try:
                target.rmdir()
            except OSError as exc:
                raise InvalidPath(f"The directory '{rel}' is not empty.", code="DirectoryNotEmpty", target=rel) from exc
        return True

    async def write(self, volume: Volume, path: str, chunks: AsyncIterator[bytes]) -> Entry:
        target, rel = self._resolve(volume, path, allow_root=False)
        if target.is_dir():
            raise InvalidPath(f"'{rel}' is a directory.", target=rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidPath(f"Cannot write '{rel}': a file is in the way of its directory.", target=rel) from exc
        self._resolve(volume, path, allow_root=False)  # the parents may have been links: check again
        fd, tmp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    handle.write(chunk)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return self._entry(target, rel)

    def open(self, volume: Volume, path: str) -> BinaryIO:
        target, rel = self._resolve(volume, path, allow_root=False)
        if target.is_dir():
            raise InvalidPath(f"'{rel}' is a directory, not a file.", target=rel)
        try:
            return target.open("rb")
        except FileNotFoundError as exc:
            raise PathNotFound(f"The file '{rel}' was not found in the {volume.label}.", target=rel) from exc

    def local_path(self, volume: Volume, path: str = "") -> Path | None:
        target, _ = self._resolve(volume, path)
        return target
