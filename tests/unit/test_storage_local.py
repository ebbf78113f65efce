"""LocalStorage on a temporary directory: volumes, streamed atomic writes, and paths confined to a volume."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from batchai.storage.base import InvalidPath, PathNotFound, Volume, VolumeKind, VolumeNotFound, iter_file
from batchai.storage.local import LocalStorage

SHARE = Volume("acct", VolumeKind.SHARE, "scripts")
CONTAINER = Volume("acct", VolumeKind.CONTAINER, "data")


async def chunks_of(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def broken(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise ConnectionError("the client went away")


def write(storage: LocalStorage, vol: Volume, path: str, data: bytes, parts: int = 4) -> None:
    size = max(1, len(data) // parts)
    asyncio.run(storage.write(vol, path, chunks_of(data[i : i + size] for i in range(0, len(data), size))))


def read(storage: LocalStorage, vol: Volume, path: str) -> bytes:
    return b"".join(iter_file(storage.open(vol, path)))


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "storage")
    store.create_volume(SHARE)
    return store


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_volumes_are_created_listed_and_deleted(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "storage")
    assert store.list_volumes("acct", VolumeKind.SHARE) == []
    assert store.create_volume(SHARE) is True
    assert store.create_volume(SHARE) is False  # existed: left as it was
    assert store.create_volume(Volume("acct", VolumeKind.SHARE, "logs")) is True
    assert store.create_volume(CONTAINER) is True
    assert store.list_volumes("acct", VolumeKind.SHARE) == ["logs", "scripts"]
    assert store.list_volumes("acct", VolumeKind.CONTAINER) == ["data"]
    assert store.list_volumes("other", VolumeKind.SHARE) == []
    assert store.volume_exists(SHARE) and store.volume_exists(CONTAINER)
    assert not store.volume_exists(Volume("acct", VolumeKind.CONTAINER, "scripts"))  # kinds are separate

    write(store, SHARE, "a.txt", b"x")
    assert store.delete_volume(SHARE) is True
    assert store.delete_volume(SHARE) is False
    assert not store.volume_exists(SHARE)
    assert store.list_volumes("acct", VolumeKind.SHARE) == ["logs"]

    store.delete_account("acct")
    store.delete_account("acct")  # idempotent
    assert store.list_volumes("acct", VolumeKind.CONTAINER) == []
    assert not (tmp_path / "storage" / "acct").exists()


def test_missing_volume_is_volume_not_found(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "storage")
    with pytest.raises(VolumeNotFound) as exc:
        store.list(SHARE)
    assert exc.value.code == "ShareNotFound"
    with pytest.raises(VolumeNotFound) as exc:
        asyncio.run(store.write(CONTAINER, "x", chunks_of([b"x"])))
    assert exc.value.code == "ContainerNotFound"
    assert files_under(tmp_path / "storage") == []


def test_streamed_write_and_read_back(storage: LocalStorage) -> None:
    data = bytes(range(256)) * 5000
    write(storage, SHARE, "cntk/deep/model.bin", data, parts=7)
    assert read(storage, SHARE, "cntk/deep/model.bin") == data
    entry = storage.stat(SHARE, "cntk/deep/model.bin")
    assert (entry.path, entry.name, entry.is_directory, entry.size) == (
        "cntk/deep/model.bin",
        "model.bin",
        False,
        len(data),
    )
    assert storage.stat(SHARE, "cntk").is_directory
    write(storage, SHARE, "cntk/deep/model.bin", b"new")  # replaced whole
    assert read(storage, SHARE, "cntk/deep/model.bin") == b"new"
    write(storage, SHARE, "empty", b"")
    assert read(storage, SHARE, "empty") == b""
    with pytest.raises(PathNotFound):
        storage.stat(SHARE, "nope")
    with pytest.raises(PathNotFound):
        storage.open(SHARE, "nope")
    with pytest.raises(InvalidPath):
        storage.open(SHARE, "cntk")  # a directory


def test_a_broken_stream_publishes_nothing_and_leaves_no_temporary_file(storage: LocalStorage) -> None:
    root = storage.local_path(SHARE)
    assert root is not None
    with pytest.raises(ConnectionError):
        asyncio.run(storage.write(SHARE, "dir/partial.bin", broken([b"a" * 1000, b"b" * 1000])))
    assert not (root / "dir" / "partial.bin").exists()
    assert [p.name for p in root.rglob("*") if p.is_file()] == []
    assert storage.list(SHARE, "", recursive=True) == [storage.stat(SHARE, "dir")]

    write(storage, SHARE, "kept.txt", b"old")
    with pytest.raises(ConnectionError):
        asyncio.run(storage.write(SHARE, "kept.txt", broken([b"new data"])))
    assert read(storage, SHARE, "kept.txt") == b"old"  # the old file stays whole
    assert sorted(p.name for p in root.rglob("*")) == ["dir", "kept.txt"]


def test_listing_nested_directories(storage: LocalStorage) -> None:
    write(storage, SHARE, "a/b/c.txt", b"c")
    write(storage, SHARE, "a/d.txt", b"dd")
    write(storage, SHARE, "top.txt", b"t")
    assert storage.make_directory(SHARE, "empty/inner") is True
    assert storage.make_directory(SHARE, "empty/inner") is False

    top = storage.list(SHARE)
    assert [(e.path, e.is_directory) for e in top] == [("a", True), ("empty", True), ("top.txt", False)]
    assert [e.path for e in storage.list(SHARE, "a")] == ["a/b", "a/d.txt"]
    assert [e.path for e in storage.list(SHARE, "a/")] == ["a/b", "a/d.txt"]  # normalised
    everything = storage.list(SHARE, "", recursive=True)
    assert [e.path for e in everything] == ["a", "a/b", "a/b/c.txt", "a/d.txt", "empty", "empty/inner", "top.txt"]
    assert {e.path: e.size for e in everything if not e.is_directory} == {"a/b/c.txt": 1, "a/d.txt": 2, "top.txt": 1}
    with pytest.raises(PathNotFound):
        storage.list(SHARE, "missing")
    with pytest.raises(PathNotFound):
        storage.list(SHARE, "top.txt")  # a file is not a directory to list
    with pytest.raises(InvalidPath):
        storage.make_directory(SHARE, "top.txt/sub")  # a file is in the way
    with pytest.raises(InvalidPath):
        asyncio.run(storage.write(SHARE, "a", chunks_of([b"x"])))  # a directory is in the way
    with pytest.raises(InvalidPath):
        asyncio.run(storage.write(SHARE, "top.txt/x", chunks_of([b"x"])))


def test_removing_files_and_directories(storage: LocalStorage) -> None:
    write(storage, SHARE, "d/sub/f.txt", b"f")
    write(storage, SHARE, "g.txt", b"g")
    with pytest.raises(InvalidPath) as exc:
        storage.remove(SHARE, "d")  # not empty, not recursive
    assert exc.value.code == "DirectoryNotEmpty"
    assert read(storage, SHARE, "d/sub/f.txt") == b"f"
    assert storage.remove(SHARE, "g.txt") is True
    assert storage.remove(SHARE, "g.txt") is False
    assert storage.remove(SHARE, "d/sub/f.txt") is True
    assert storage.remove(SHARE, "d/sub") is True  # empty now
    write(storage, SHARE, "d/x/y/z.txt", b"z")
    assert storage.remove(SHARE, "d", recursive=True) is True
    assert storage.list(SHARE) == []
    with pytest.raises(InvalidPath):
        storage.remove(SHARE, "")  # never the volume itself


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/../b", "/etc/passwd", "/", "a\\..\\b", "a\x00b"])
def test_paths_that_leave_the_volume_are_refused(storage: LocalStorage, tmp_path: Path, path: str) -> None:
    before = files_under(tmp_path)
    with pytest.raises(InvalidPath):
        write(storage, SHARE, path, b"escaped")
    with pytest.raises(InvalidPath):
        storage.open(SHARE, path)
    with pytest.raises(InvalidPath):
        storage.stat(SHARE, path)
    with pytest.raises(InvalidPath):
        storage.list(SHARE, path)
    with pytest.raises(InvalidPath):
        storage.make_directory(SHARE, path)
    with pytest.raises(InvalidPath):
        storage.remove(SHARE, path, recursive=True)
    assert files_under(tmp_path) == before


def test_links_leading_outside_the_volume_are_refused(storage: LocalStorage, tmp_path: Path) -> None:
    root = storage.local_path(SHARE)
    assert root is not None
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "secret-link").symlink_to(outside / "secret.txt")
    write(storage, SHARE, "inside.txt", b"in")
    (root / "inner-link").symlink_to(root / "inside.txt")  # a link within the volume is fine

    for path in ("out/secret.txt", "secret-link"):
        with pytest.raises(InvalidPath):
            storage.open(SHARE, path)
    with pytest.raises(InvalidPath):
        write(storage, SHARE, "out/new.txt", b"escaped")
    with pytest.raises(InvalidPath):
        write(storage, SHARE, "out/deeper/new.txt", b"escaped")
    with pytest.raises(InvalidPath):
        storage.list(SHARE, "out")
    with pytest.raises(InvalidPath):
        storage.make_directory(SHARE, "out/made")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"

    # Listings skip what leads outside, recursive or not, and show the rest.
    assert [e.path for e in storage.list(SHARE)] == ["inner-link", "inside.txt"]
    assert [e.path for e in storage.list(SHARE, recursive=True)] == ["inner-link", "inside.txt"]
    assert read(storage, SHARE, "inner-link") == b"in"

    # Removing through a link that leads outside is refused; removing the link removes only the link.
    with pytest.raises(InvalidPath):
        storage.remove(SHARE, "out/secret.txt")
    assert storage.remove(SHARE, "out", recursive=True) is True
    assert not (root / "out").exists() and (outside / "secret.txt").read_bytes() == b"secret"
    # A link within the volume is removed as a link, leaving its target.
    assert storage.remove(SHARE, "inner-link") is True
    assert read(storage, SHARE, "inside.txt") == b"in"


def test_a_fifo_in_a_volume_is_neither_listed_nor_opened(storage: LocalStorage) -> None:
    """A job can make one in a share it mounts; opening it to read would block a server thread for good."""
    root = storage.local_path(SHARE)
    assert root is not None
    write(storage, SHARE, "real.txt", b"real")
    os.mkfifo(root / "fifo")
    assert [e.path for e in storage.list(SHARE)] == ["real.txt"]
    with pytest.raises(PathNotFound):
        storage.open(SHARE, "fifo")
    with pytest.raises(PathNotFound):
        storage.stat(SHARE, "fifo")


def test_a_folder_swapped_for_a_link_out_is_not_opened(storage: LocalStorage, tmp_path: Path) -> None:
    """Between a check of the path and its open, a job may swap a folder for a link: the open is one step."""
    root = storage.local_path(SHARE)
    assert root is not None
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"secret")
    write(storage, SHARE, "sub/secret.txt", b"decoy")
    (root / "sub").rename(root / "sub.old")
    (root / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(InvalidPath):
        storage.open(SHARE, "sub/secret.txt")
