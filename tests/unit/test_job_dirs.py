"""A node's job directories: made from the spares of earlier jobs, emptied, never through a link."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchai.runtime import job_dirs, supervisor


def job_dir(node: Path, job_id: int) -> Path:
    directory = node / "jobs" / str(job_id)
    job_dirs.make(directory)
    return directory


def test_a_job_s_directory_is_made_from_an_emptied_spare(tmp_path: Path) -> None:
    node, outside = tmp_path / "node-0", tmp_path / "data"
    outside.mkdir()
    (outside / "kept.txt").write_text("kept")
    first = job_dir(node, 1)
    inode = first.stat().st_ino
    (first / "task-0-1.exit").write_text("0")
    (first / "mounts").mkdir()
    (first / "mounts" / "data").symlink_to(outside)
    (first / "wd" / "scratch.txt").write_text("scratch")
    (first / "wd" / "sub" / "deeper").mkdir(parents=True)
    (first / "wd" / "link").symlink_to(outside)

    job_dirs.retire(first)
    assert not first.exists()
    second = job_dir(node, 2)
    assert second.stat().st_ino == inode  # the same directory, renamed
    assert [p.name for p in second.iterdir()] == ["wd"] and not list((second / "wd").iterdir())
    assert (outside / "kept.txt").read_text() == "kept"  # links were removed, not followed
    assert not list((node / "spare").iterdir())


def _run_first_process(directory: Path) -> supervisor.Handle:
    exit_file = directory / "task-0-1.exit"
    process, handle = supervisor.spawn(
        [sys.executable, "-c", "pass"],
        env={},
        cwd=directory / "wd",
        stdout=directory / "stdout.txt",
        stderr=directory / "stderr.txt",
        exit_file=exit_file,
    )
    supervisor.record_exit(handle, process.wait())
    return handle


def test_a_spare_keeps_its_pid_file_blank_for_the_next_job_s_process(tmp_path: Path) -> None:
    """No file is freed per job on the common path, nor emptied (see the module's docstring): the next job's
    process writes its pid into the blank file, which meanwhile names no process."""
    node = tmp_path / "node-0"
    first = job_dir(node, 1)
    _run_first_process(first)
    inode = (first / "task-0-1.pid").stat().st_ino

    job_dirs.retire(first)
    second = job_dir(node, 2)
    assert sorted(p.name for p in second.iterdir()) == ["task-0-1.pid", "wd"]
    assert (second / "task-0-1.pid").read_bytes() == supervisor.NO_PROCESS
    assert supervisor.find(second / "task-0-1.exit") is None
    assert supervisor.recorded(second / "task-0-1.exit") == (None, None)

    handle = _run_first_process(second)
    assert (second / "task-0-1.pid").stat().st_ino == inode
    assert supervisor.find(second / "task-0-1.exit") == handle
    assert supervisor.recorded(second / "task-0-1.exit")[0] == 0


def test_a_pid_file_replaced_by_a_link_is_neither_followed_nor_kept(tmp_path: Path) -> None:
    node, outside = tmp_path / "node-0", tmp_path / "kept.txt"
    outside.write_text("kept")
    first = job_dir(node, 1)
    (first / "task-0-1.pid").symlink_to(outside)
    with pytest.raises(OSError):  # a process is not started with its pid written through the link
        _run_first_process(first)
    job_dirs.retire(first)
    second = job_dir(node, 2)
    assert [p.name for p in second.iterdir()] == ["wd"] and outside.read_text() == "kept"


def test_a_working_directory_replaced_by_a_link_is_not_followed(tmp_path: Path) -> None:
    node, outside = tmp_path / "node-0", tmp_path / "data"
    outside.mkdir()
    (outside / "kept.txt").write_text("kept")
    first = job_dir(node, 1)
    (first / "wd").rmdir()
    (first / "wd").symlink_to(outside)
    job_dirs.retire(first)
    assert not first.exists() and (outside / "kept.txt").read_text() == "kept"
    assert not (node / "spare").exists()  # (not kept: it was not a job's directory as made)


def test_a_node_keeps_a_few_spares_and_removes_the_rest(tmp_path: Path) -> None:
    node = tmp_path / "node-0"
    directories = [job_dir(node, job_id) for job_id in range(1, job_dirs.SPARES + 3)]
    for directory in directories:
        job_dirs.retire(directory)
    assert not any(d.exists() for d in directories)
    assert len(list((node / "spare").iterdir())) == job_dirs.SPARES


def test_a_job_s_existing_directory_is_kept_as_it_is(tmp_path: Path) -> None:
    """Another attempt of the job, or another of its processes on the node, finds what the job left there."""
    node = tmp_path / "node-0"
    job_dirs.retire(job_dir(node, 1))
    second = job_dir(node, 2)
    (second / "wd" / "checkpoint").write_text("epoch 3")
    job_dirs.make(second)
    assert (second / "wd" / "checkpoint").read_text() == "epoch 3"


def test_clearing_a_node_retires_only_the_directories_of_other_jobs(tmp_path: Path) -> None:
    node = tmp_path / "node-0"
    for job_id in (1, 2, 3):
        job_dir(node, job_id)
    (node / "jobs" / "output.txt").write_text("a job's output")  # not a job's directory
    job_dirs.clear_earlier_jobs(node, keep={3})
    assert sorted(p.name for p in (node / "jobs").iterdir()) == ["3", "output.txt"]
    assert len(list((node / "spare").iterdir())) == 2


MOUNTED = """
import subprocess, sys
from pathlib import Path
from batchai.runtime import job_dirs
node, how = Path(sys.argv[1]), sys.argv[2]
directory = node / "jobs" / "1"
job_dirs.make(directory)
mount_point = directory / "wd" / "data dir"  # (a blank in it: the mount table escapes it)
mount_point.mkdir()
if how == "tmpfs":
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount_point)], check=True)
else:  # a directory of the same file system: os.path.ismount does not see it
    source = node / "dataset"
    source.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(mount_point)], check=True)
(mount_point / "on-the-mount.txt").write_text("data")
job_dirs.retire(directory)
job_dirs.clear_earlier_jobs(node, keep=set())
spares = list((node / "spare").iterdir()) if (node / "spare").exists() else []
print((mount_point / "on-the-mount.txt").read_text(), spares)
subprocess.run(["umount", str(mount_point)], check=True)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
@pytest.mark.parametrize("how", ["tmpfs", "bind"])
def test_nothing_is_removed_through_a_mount(tmp_path: Path, how: str) -> None:
    """A job's directory that holds a mounted file system (an unmanaged one the job mounted, e.g. a bind mount of a
    dataset) is left whole."""
    node = str(tmp_path / "node-0")
    ran = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", MOUNTED, node, how],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["data", "[]"]
