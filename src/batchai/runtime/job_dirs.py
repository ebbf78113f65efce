"""A job's directory on a node (``jobs/<id>``, with its working directory ``wd``): made when the job starts
there, removed once the node's next job has started (as Batch AI emptied ``$AZ_BATCHAI_JOB_TEMP_DIR`` for each
new job).

A node keeps up to ``SPARES`` of those directories, emptied, in ``spare/`` and makes its next jobs' from them
(a rename) rather than remove one directory and make another for each job. On ext4 both cost: making a
directory allocates an inode and a block, and removing one frees the block, which with the ``discard`` mount
option waits for the disk. A job's own files in it go as before. A spare keeps only its processes' pid files,
made blank (``supervisor.NO_PROCESS``: a blank one names no process), so that the next job's first process writes
its own into the same file: this disk (ext4 without a journal) passes over every inode freed in the last minutes
each time it makes a new file, so one file freed per job made every later file of every job slower.

Nothing is ever removed through a mount: a directory that still holds a mounted file system (an unmanaged one a
job mounted) is left whole, with a warning."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from batchai.runtime.supervisor import NO_PROCESS, PID_SUFFIX, overwrite

log = logging.getLogger("batchai.engine")
SPARES = 2  # emptied job directories a node keeps (one is enough while jobs follow one another)
MOUNT_TABLE = "/proc/self/mountinfo"
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def make(directory: Path) -> None:
    """A job's directory on its node (``jobs/<id>``) with its ``wd``, from a spare when the node has one; one
    that exists (the job's earlier attempt, or another of its processes) is kept as it is."""
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        for spare in _spares(directory.parent.parent):
            try:
                os.rename(spare, directory)  # (another thread may have taken it)
                break
            except OSError:
                continue
    (directory / "wd").mkdir(parents=True, exist_ok=True)


def retire(directory: Path) -> None:
    """A job's directory on its node (``jobs/<id>``), once no process of the job runs: emptied into a spare
    when the node has fewer than ``SPARES``, else removed; one already gone is fine."""
    if _holds_mount(directory):
        log.warning("left %s in place: a file system is still mounted in it", directory)
        return
    node_dir = directory.parent.parent
    if directory.is_dir() and not directory.is_symlink() and len(_spares(node_dir)) < SPARES and _empty(directory):
        spare = node_dir / "spare" / directory.name
        try:
            spare.parent.mkdir(exist_ok=True)
            os.rename(directory, spare)
            return
        except OSError:
            pass
    shutil.rmtree(directory, ignore_errors=True)  # (no mount in it: looked at above)


def clear_earlier_jobs(node_dir: Path, keep: set[int]) -> None:
    """Retire the directories of the jobs that ran on the node before the job that starts there now: a node runs
    one job at a time, so they have all ended. ``keep``: that job's id, and those of jobs being started or
    staged. Only job directories go (named by job id); other files there, such as output a job was told to
    write there, stay."""
    try:
        entries = list(os.scandir(node_dir / "jobs"))
    except OSError:
        return
    for entry in entries:
        if entry.name.isdigit() and int(entry.name) not in keep and entry.is_dir(follow_symlinks=False):
            retire(Path(entry.path))


def remove(directory: Path) -> None:
    """Remove a directory, unless a file system is still mounted in it; one already gone is fine."""
    if _holds_mount(directory):
        log.warning("left %s in place: a file system is still mounted in it", directory)
        return
    shutil.rmtree(directory, ignore_errors=True)


def _spares(node_dir: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(node_dir / "spare")]
    except OSError:
        return []


def _empty(directory: Path) -> bool:
    """Remove everything in a job's directory but its ``wd`` and its pid files (made blank), and everything in
    ``wd``; whether nothing else is left. Through file descriptors, as ``shutil.rmtree`` does: no link is followed, even
    one put in the place of a directory meanwhile."""
    try:
        top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        work = os.open("wd", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
    except OSError:
        os.close(top)
        return False
    try:
        return _empty_fd(top, keep="wd", blanked=PID_SUFFIX) and _empty_fd(work)
    finally:
        os.close(work)
        os.close(top)


def _empty_fd(fd: int, keep: str = "", blanked: str = "") -> bool:
    """Remove every entry of the directory open as ``fd`` but ``keep`` and the files named ``*{blanked}``,
    which are made blank instead (``supervisor.NO_PROCESS``); whether nothing else is left."""
    for entry in os.scandir(fd):
        if entry.name == keep:
            continue
        try:
            if _blanked(entry, blanked):
                kept = os.open(entry.name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
                try:
                    overwrite(kept, NO_PROCESS)
                finally:
                    os.close(kept)
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.name, dir_fd=fd)
            else:
                os.unlink(entry.name, dir_fd=fd)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    left = [entry.name for entry in os.scandir(fd) if not _blanked(entry, blanked)]
    return left == ([keep] if keep else [])


def _blanked(entry: os.DirEntry[str], suffix: str) -> bool:
    """Whether ``entry`` is a file that ``_empty_fd`` makes blank rather than removes (a name ending in ``suffix``)."""
    return bool(suffix) and entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False)


def _holds_mount(directory: Path) -> bool:
    """Whether a file system is mounted at ``directory`` or below it, bind mounts of a directory of the same file
    system included, by this process's mount table (``/proc/self/mountinfo``); without one (not Linux), whether a
    directory in it is a mount point by ``os.path.ismount`` (which does not see bind mounts; links not followed)."""
    try:
        with open(MOUNT_TABLE, "rb") as table:
            lines = table.read().splitlines()
    except OSError:
        return any(os.path.ismount(os.path.join(root, d)) for root, dirs, _files in os.walk(directory) for d in dirs)
    top = os.fsencode(os.path.realpath(directory))
    for line in lines:
        fields = line.split(b" ", 5)
        if len(fields) > 4:  # (the fifth field is the mount point, with blanks and backslashes escaped in octal)
            point = _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4])
            if point == top or point.startswith(top + b"/"):
                return True
    return False
