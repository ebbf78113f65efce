"""Opening below a directory in one step (``storage.beneath``): no link leads out, whenever it was made, and
nothing blocks on a FIFO."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from batchai.storage import beneath


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file").write_text("inside")
    return root


def read(root: Path, rel: str, follow_links: bool) -> str:
    fd, _info = beneath.open_regular(root, rel, follow_links=follow_links)
    with os.fdopen(fd) as handle:
        return handle.read()


def test_files_below_are_opened(root: Path) -> None:
    assert read(root, "sub/file", follow_links=False) == "inside"
    assert read(root, "./sub//file", follow_links=True) == "inside"


@pytest.mark.parametrize("follow_links", [True, False])
def test_a_folder_swapped_for_a_link_out_is_not_followed(root: Path, follow_links: bool) -> None:
    """What a job can do between a listing (which saw a plain folder) and the download of its link."""
    (root / "sub").rename(root / "old")
    (root / "sub").symlink_to(root.parent / "outside", target_is_directory=True)
    (root / "old" / "secret").write_text("decoy")  # the name exists below the root too
    with pytest.raises(OSError) as refused:
        read(root, "sub/secret", follow_links=follow_links)
    assert refused.value.errno in (errno.EXDEV, errno.ELOOP)


@pytest.mark.parametrize("link", ["abs", "rel"])
def test_links_that_stay_below_are_followed_only_when_asked(root: Path, link: str) -> None:
    target = root / "sub" / "file" if link == "abs" else Path("sub/file")
    (root / "link").symlink_to(target)
    assert read(root, "link", follow_links=True) == "inside"
    with pytest.raises(OSError):
        read(root, "link", follow_links=False)


def test_dot_dot_is_refused_before_anything_is_opened(root: Path) -> None:
    with pytest.raises(OSError) as refused:
        beneath.open_beneath(root / "sub", "../sub/file", follow_links=True)
    assert refused.value.errno == errno.EXDEV


def test_a_fifo_neither_blocks_nor_counts_as_a_file(root: Path) -> None:
    os.mkfifo(root / "fifo")  # nobody writes to it: a blocking open would wait for ever
    with pytest.raises(OSError) as refused:
        beneath.open_regular(root, "fifo", follow_links=False)
    assert refused.value.errno == errno.ENXIO
    with pytest.raises(IsADirectoryError):
        beneath.open_regular(root, "sub", follow_links=False)


def test_the_walk_without_openat2_follows_no_link(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels before Linux 5.6: one name at a time from the root's descriptor."""
    monkeypatch.setattr(beneath, "_has_openat2", False)
    assert read(root, "sub/file", follow_links=False) == "inside"
    (root / "out").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(OSError):
        read(root, "out/secret", follow_links=True)
    (root / "in").symlink_to(root / "sub", target_is_directory=True)
    assert read(root, "in/file", follow_links=True) == "inside"  # resolved, then opened below the root again
