"""A job's folders on this host (``services.job_files``): what a job makes there is listed and served only
below the folder the user named, through no link, and never a FIFO."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from batchai.errors import NotFound
from batchai.services.job_files import Location, entries_in, names_in, open_host_file, parse_resource
from batchai.storage.base import Entry


def list_location(location: Location) -> list[Entry]:
    """What listing the folder shows (on this host: no storage backend is asked)."""
    storage: Any = None
    return entries_in(storage, location, names_in(storage, location))


@pytest.fixture
def output(tmp_path: Path) -> Location:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0")
    prefix = tmp_path / "prefix"
    (prefix / "seg" / "outputs" / "sub").mkdir(parents=True)
    (prefix / "seg" / "outputs" / "sub" / "passwd").write_text("decoy")
    return Location(host=prefix).child("seg/outputs")


def test_a_link_signed_for_a_file_serves_that_file(output: Location) -> None:
    location = parse_resource(output.child("sub").child("passwd").resource)
    handle, size = open_host_file(location)
    with handle:
        assert (handle.read(), size) == (b"decoy", 5)
    assert location.name == "passwd"


def test_a_folder_swapped_for_a_link_after_the_listing_serves_nothing(output: Location, tmp_path: Path) -> None:
    """The job lists as a plain folder, gets its link, then puts a link to the host's /etc in its place."""
    assert [e.name for e in list_location(output.child("sub"))] == ["passwd"]
    link = parse_resource(output.child("sub/passwd").resource)
    folder = tmp_path / "prefix" / "seg" / "outputs"
    (folder / "sub").rename(folder / "sub.old")
    (folder / "sub").symlink_to(tmp_path / "etc", target_is_directory=True)
    with pytest.raises(NotFound):
        open_host_file(link)
    with pytest.raises(NotFound):  # nor listed through the link
        list_location(output.child("sub"))
    # The same with the job's own folders above: the segment itself swapped for a link.
    (tmp_path / "prefix" / "seg").rename(tmp_path / "prefix" / "seg.old")
    (tmp_path / "prefix" / "seg").symlink_to(tmp_path / "prefix" / "seg.old", target_is_directory=True)
    with pytest.raises(NotFound):
        open_host_file(link)


def test_fifos_and_links_are_neither_listed_nor_served(output: Location, tmp_path: Path) -> None:
    folder = tmp_path / "prefix" / "seg" / "outputs"
    os.mkfifo(folder / "fifo")  # nobody writes to it: opening it to read would block a server thread
    (folder / "etc").symlink_to(tmp_path / "etc", target_is_directory=True)
    assert [(e.name, e.is_directory) for e in list_location(output)] == [("sub", True)]
    with pytest.raises(NotFound):
        open_host_file(output.child("fifo"))
