"""The local-directory storage backend: ``{root}/{account}/{shares|containers}/{name}/...`` on this host."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from batchai.errors import InvalidInput
from batchai.storage import beneath
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
    def _stat_beneath(base: Path, rel: str) -> os.stat_result:
        """What ``rel`` is, resolved in one step below ``base`` (links that lead out are not followed)."""
        fd = beneath.open_beneath(base, rel, follow_links=True)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def stat(self, volume: Volume, path: str) -> Entry:
        rel = volume_path(path, allow_root=True)
        try:
            entry = Entry.of(self._stat_beneath(self._existing_volume_dir(volume), rel), rel)
        except OSError:
            self._resolve(volume, path)  # InvalidPath if it leads outside the volume (the open refused it)
            entry = None
        if entry is None:
            raise PathNotFound(f"'{rel}' was not found in the {volume.label}.", target=rel)
        return entry

    def names(self, volume: Volume, path: str = "") -> list[str]:
        target, rel = self._resolve(volume, path)
        try:
            with os.scandir(target) as entries:
                return sorted(e.name for e in entries if not e.name.startswith(UPLOAD_PREFIX))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(f"The directory '{rel}' was not found in the {volume.label}.", target=rel) from exc

    def list(self, volume: Volume, path: str = "", *, recursive: bool = False) -> list[Entry]:
        target, rel = self._resolve(volume, path)
        if not target.is_dir():
            raise PathNotFound(f"The directory '{rel}' was not found in the {volume.label}.", target=rel)
        base = self._existing_volume_dir(volume)
        out: list[Entry] = []
        children = sorted(target.rglob("*") if recursive else target.iterdir())
        for child in children:
            if child.name.startswith(UPLOAD_PREFIX):
                continue  # an upload still under way
            rel_child = child.relative_to(base).as_posix()
            try:
                # A link is shown as what it leads to, if that is in the volume; nothing else is followed.
                info = self._stat_beneath(base, rel_child) if child.is_symlink() else os.lstat(child)
            except OSError:
                continue  # removed while listing, or a link that leaves the volume
            if (entry := Entry.of(info, rel_child)) is not None:
                out.append(entry)
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
                handle.flush()
                # Executable, as a file on an Azure file share mounted with its default fileMode 0777 was:
                # setup tasks and jobs run scripts straight from their mounts.
                os.fchmod(handle.fileno(), 0o755)
                info = os.fstat(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        entry = Entry.of(info, rel)
        assert entry is not None  # (a regular file: written here)
        return entry

    def open(self, volume: Volume, path: str) -> BinaryIO:
        """The file, opened in one step below the volume's directory: no link swapped in on the way leads out,
        and a FIFO or a device is not a file."""
        rel = volume_path(path, allow_root=False)
        try:
            fd, _info = beneath.open_regular(self._existing_volume_dir(volume), rel, follow_links=True)
        except IsADirectoryError as exc:
            raise InvalidPath(f"'{rel}' is a directory, not a file.", target=rel) from exc
        except OSError as exc:
            self._resolve(volume, path, allow_root=False)  # InvalidPath if it leads outside (the open refused it)
            raise PathNotFound(f"The file '{rel}' was not found in the {volume.label}.", target=rel) from exc
        return os.fdopen(fd, "rb")

    def sweep_uploads(self, before: float) -> int:
        swept = 0
        for folder, _dirs, files in os.walk(self.root):  # (links are not followed)
            for name in files:
                if name.startswith(UPLOAD_PREFIX):
                    path = os.path.join(folder, name)
                    try:
                        if os.lstat(path).st_mtime < before:
                            os.unlink(path)
                            swept += 1
                    except OSError:
                        continue  # gone meanwhile
        return swept

    def local_path(self, volume: Volume, path: str = "") -> Path | None:
        target, _ = self._resolve(volume, path)
        return target
