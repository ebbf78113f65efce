"""What a process leaves behind outside its session, and ending it with the process.

Killing a process's session when it ends catches what it left running in it, but not a daemon: a process
that started a new session (``setsid``) and whose parent is gone (a double fork) is in no job's group and,
by default, nobody's child but init's, so it would hold its node's GPUs and memory after its job ended.
Two things find it instead:

- the launcher is a *child subreaper* (Linux): orphans among its descendants become its children rather
  than init's;
- every process it starts carries ``TAG`` in its environment (the task's exit file), which the daemon
  inherits, so that the orphan is known to belong to that task.

When a task's process ends, the launcher stops its adopted orphans that carry the task's tag (with their
descendants) as it stops what the process left in its session: SIGTERM, and SIGKILL after the grace period.
Orphans that end, killed or not, are reaped when they do (SIGCHLD wakes the launcher), so that
nobody waiting for them to be gone waits on a zombie. A daemon that clears its environment is not told
apart from the others' and is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Collection
from pathlib import Path

import psutil

# The variable every process of a task starts with: its task's exit file.
TAG = "BATCHAI_TASK"
_PR_SET_CHILD_SUBREAPER = 36


def adopt() -> bool:
    """Make this process the parent of its descendants' orphans. False where the OS cannot (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap(tracked: Collection[int]) -> list[int]:
    """Reap this process's adopted children that have ended; returns those still running. ``tracked``: the
    children this process started itself (left to their own ``wait``)."""
    running = []
    for pid in _children():
        if pid in tracked:
            continue
        try:
            if not os.waitpid(pid, os.WNOHANG)[0]:
                running.append(pid)
        except ChildProcessError:
            continue
    return running


def signal_tagged(task: str, session: int, tracked: Collection[int], sig: int) -> list[int]:
    """Send ``sig`` (0: none, to learn whether any is left) to this process's adopted orphans that carry
    ``task``'s tag, and to their descendants, once the task's process (the leader of ``session``, signalled
    with it) has ended; ``tracked`` as for ``reap``. Returns the pids signalled (reaped when they have
    ended, by a later ``reap``)."""
    tag = f"\0{TAG}={task}\0".encode()
    signalled = []
    for pid in reap(tracked):
        try:
            if os.getsid(pid) == session:
                continue  # in the session: signalled with it
        except ProcessLookupError:
            continue
        if _carries(pid, tag, patient=True):
            signalled += _signal_tree(pid, sig)
    return signalled


def tagged_under(directory: Path) -> list[psutil.Process]:
    """Every process of this user whose tag names a task below ``directory``, with its descendants (e.g.
    what a node's setup task left running, wherever it was re-parented)."""
    prefix = f"\0{TAG}={directory}/".encode()
    found: dict[int, psutil.Process] = {}
    for pid in psutil.pids():
        if pid in found or pid == os.getpid():
            continue
        if _carries(pid, prefix):
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    found.setdefault(process.pid, process)
    return list(found.values())


def tags_under(directory: Path) -> set[Path]:
    """The tags (tasks' exit files) below ``directory`` that processes of this user carry: where what runs
    was started, even once that directory is gone."""
    prefix = f"\0{TAG}={directory}/".encode()
    tags: set[Path] = set()
    for pid in psutil.pids():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                text = b"\0" + environ.read()
        except OSError:
            continue
        start = text.find(prefix)
        if start >= 0:
            end = text.find(b"\0", start + 1)
            tags.add(Path(os.fsdecode(text[start + len(TAG) + 2 : end if end >= 0 else None])))
    return tags


def _children() -> list[int]:
    """This process's children (each thread's, as Linux lists them; psutil's scan where it does not)."""
    pids: list[int] = []
    try:
        for thread in os.listdir(f"/proc/{os.getpid()}/task"):
            with open(f"/proc/{os.getpid()}/task/{thread}/children") as listed:
                pids += [int(pid) for pid in listed.read().split()]
    except OSError:
        return [child.pid for child in psutil.Process().children()]
    return pids


# A process's environment reads empty for a moment while it is in the middle of an exec (e.g. a daemon's
# ``exec sleep``): how many times, and how often, a look at one of this process's children reads it again.
EXEC_LOOKS = 100
EXEC_LOOK_SECONDS = 0.0005


def _carries(pid: int, tag: bytes, patient: bool = False) -> bool:
    """Whether the environment of ``pid`` holds ``tag``: a variable, between NULs, or the start of one.
    ``patient``: an empty environment is read again for up to 50 ms (it may be in the middle of an exec); only
    for this process's children (kernel threads, which any scan of all processes meets, have none)."""
    for _ in range(EXEC_LOOKS if patient else 1):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                text = environ.read()
        except OSError:
            return False
        if text or not patient:
            return tag in b"\0" + text
        time.sleep(EXEC_LOOK_SECONDS)
    return False


def _signal_tree(pid: int, sig: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)
    return [process.pid for process in tree]
