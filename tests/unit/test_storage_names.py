"""The storage backend's own guard on names: volumes named ``..``, paths too long, reserved upload names; and the
Content-Disposition of download links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchai.api.routes.downloads import content_disposition
from batchai.errors import InvalidInput
from batchai.storage.base import InvalidPath, Volume, VolumeKind, clean_path, volume_path
from batchai.storage.local import LocalStorage


async def one_chunk() -> AsyncIterator[bytes]:
    yield b"x"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "storage")
    store.create_volume(Volume("acct", VolumeKind.SHARE, "logs"))
    store.create_volume(Volume("acct", VolumeKind.CONTAINER, "data"))
    return store


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "UPPER", "../acct"])
def test_a_volume_name_never_becomes_a_path(storage: LocalStorage, tmp_path: Path, name: str) -> None:
    before = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    for kind in VolumeKind:
        volume = Volume("acct", kind, name)
        assert storage.volume_exists(volume) is False
        with pytest.raises(InvalidInput):
            storage.delete_volume(volume)
        with pytest.raises(InvalidInput):
            storage.create_volume(volume)
        with pytest.raises(InvalidInput):
            storage.list(volume)
    with pytest.raises(InvalidInput):
        storage.delete_account(name or "..")
    assert sorted(p.as_posix() for p in tmp_path.rglob("*")) == before


def test_path_limits() -> None:
    assert clean_path("a/" + "n" * 255) == "a/" + "n" * 255
    for bad in ("n" * 256, "é" * 128, "/".join(["d" * 250] * 9), "a\\b", "a\x00b"):
        with pytest.raises(InvalidPath):
            clean_path(bad)
    with pytest.raises(InvalidPath, match="not valid UTF-8"):
        volume_path("bad\udcffname")
    with pytest.raises(InvalidPath, match="reserved"):
        volume_path("d/.batchai-upload-x")
    assert volume_path(".batchai-uploads") == ".batchai-uploads"


def test_reserved_names_are_not_written(storage: LocalStorage, tmp_path: Path) -> None:
    share = Volume("acct", VolumeKind.SHARE, "logs")
    with pytest.raises(InvalidPath):
        asyncio.run(storage.write(share, ".batchai-upload-x", one_chunk()))
    with pytest.raises(InvalidPath):
        storage.make_directory(share, "a/.batchai-upload-d")
    assert not any((tmp_path / "storage/acct/shares/logs").iterdir())


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("plain.txt", "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"),
        ("文件.txt", "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.txt"),
        ("new\nline", "attachment; filename=\"new_line\"; filename*=UTF-8''new%0Aline"),
        ('a"; b=\\', "attachment; filename=\"a_; b=_\"; filename*=UTF-8''a%22%3B%20b%3D%5C"),
        ("bad\udcffname", "attachment; filename=\"bad_name\"; filename*=UTF-8''bad%FFname"),
    ],
)
def test_content_disposition(name: str, header: str) -> None:
    assert content_disposition(name) == header
    header.encode("latin-1")  # a header value Starlette can send
