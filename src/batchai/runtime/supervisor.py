"""Process supervision, done one way for every process batchai starts (jobs, job preparation, setup tasks).

A process runs in a new session (its own process group), unbuffered, with stdout and stderr going to
files, and its exit code is written down when it ends, so that a server that restarted (and is no longer
the parent) can still learn how it ended: by its parent, the launcher (``runtime.launcher``) on local nodes,
as a line added to its pid file (``record_exit``: no file to create on the way to the node's next job), or
by the ``wrapper_script`` it runs in, to ``<exit file>``. Stopping is SIGTERM to the
whole tree, a grace period, then SIGKILL. A process is identified by (pid, start time) so a recycled pid
is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from batchai.runtime import orphans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handle:
    pid: int
    start: float  # psutil create_time, to recognise the process after a restart
    exit_file: Path
    where: str = ""  # the node the process runs on, for providers with remote nodes (e.g. a Ray node id)
    # What the process leaves running when it ends lives on until its node is released (``stop_left_on``):
    # a setup task's daemons, as Batch AI's start tasks left theirs. Otherwise it is stopped with the process.
    keep: bool = False


@dataclass(frozen=True)
class Outcome:
    """How a process ended: its exit code, or None if it vanished without recording one (``node_lost``:
    because the node it ran on went away; ``agent_lost`` as well: the node's machine is still there, but the
    agent that ran the process on it died, ending what it ran there); ``ended_at`` (epoch seconds) when known
    from its exit file, which may be long before anyone looked (the server was down)."""

    exit_code: int | None
    node_lost: bool = False
    ended_at: float | None = None
    agent_lost: bool = False


def from_info(info: dict[str, Any]) -> Handle | None:
    """The handle a task's or a setup task's stored info describes (None if no process was recorded)."""
    if not info.get("pid"):
        return None
    return Handle(
        int(info["pid"]),
        float(info.get("start", 0.0)),
        Path(info["exit_file"]),
        str(info.get("where", "")),
        bool(info.get("keep", False)),
    )


def as_info(handle: Handle) -> dict[str, Any]:
    """A handle as stored with its task (``from_info`` reads it back)."""
    info: dict[str, Any] = {"pid": handle.pid, "start": handle.start, "exit_file": str(handle.exit_file)}
    if handle.where:
        info["where"] = handle.where
    if handle.keep:
        info["keep"] = True
    return info


def wrapper_script(body: str, exit_file: Path) -> str:
    """A bash script that runs ``body`` and records its exit code atomically."""
    final = shlex.quote(str(exit_file))
    # Written just before the wrapper exits: whoever sees the process gone sees the whole file (no rename,
    # which would cost a process per task).
    record = f"printf '%s' \"$__batchai_rc\" > {final}"
    # The body runs in a subshell, so that its own 'exit' still lets the wrapper record the code. The wrapper's
    # own stderr is silenced (the body keeps the real one, kept on fd 3 for it): bash would otherwise report a
    # body killed by a signal in the job's stderr ("task-0.sh: line 4: 123 Killed ( ...the whole body... )").
    return f"exec 3>&2 2>/dev/null\n(\nexec 2>&3 3>&-\n{body}\n)\n__batchai_rc=$?\n{record}\nexit $__batchai_rc\n"


@dataclass
class Outputs:
    """A process's stdout and stderr and its pid file, open before it starts (``open_outputs``)."""

    stdout: BinaryIO
    stderr: BinaryIO
    pids: BinaryIO

    def close(self) -> None:
        for file in (self.stdout, self.stderr, self.pids):
            file.close()


def open_outputs(stdout: Path, stderr: Path, exit_file: Path) -> Outputs:
    """The files of a process to be started with ``exit_file``: its output is appended to ``stdout`` and
    ``stderr``; its pid file is made blank, not removed (a node's job directory may come with one: ``job_dirs``),
    and a blank one names no process (``find``). Raises OSError if they cannot be opened."""
    exit_file.unlink(missing_ok=True)
    for directory in {stdout.parent, stderr.parent}:
        directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as opened:
        out = opened.enter_context(open(stdout, "ab", buffering=0))
        err = opened.enter_context(open(stderr, "ab", buffering=0))
        pids = opened.enter_context(open(pid_file(exit_file), "wb", buffering=0, opener=_kept))
        overwrite(pids.fileno(), NO_PROCESS)
        opened.pop_all()
    return Outputs(out, err, pids)


def spawn(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdout: Path,
    stderr: Path,
    exit_file: Path,
    outputs: Outputs | None = None,
) -> tuple[subprocess.Popen[bytes], Handle]:
    """Start ``argv`` in a new session, unbuffered, with output appended to the given files, and write its
    pid file at once (so that a server that dies before it records the process can still find it). ``outputs``:
    those files opened already (``open_outputs``); closed either way. The caller owns the child: it must reap it
    (``Popen.wait``). Raises OSError if it cannot start."""
    with contextlib.closing(outputs or open_outputs(stdout, stderr, exit_file)) as files:
        started = start_time_now()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1", orphans.TAG: str(exit_file)},
            stdin=subprocess.DEVNULL,
            stdout=files.stdout,
            stderr=files.stderr,
            start_new_session=True,
            close_fds=True,
        )
        overwrite(files.pids.fileno(), f"{process.pid} {started!r}".encode())
    return process, Handle(process.pid, started, exit_file)


def _kept(path: str, flags: int) -> int:
    """An opener that neither follows a link nor truncates (``overwrite`` replaces the content)."""
    return os.open(path, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW, 0o666)


_TICKS = os.sysconf("SC_CLK_TCK")  # clock ticks per second, the unit of a process's start in /proc
_BOOT = psutil.boot_time()  # (read once, as psutil's own create_time does: it reads /proc/stat)


def start_time_now() -> float:
    """The start time (psutil's ``create_time``) of a process forked now, within a clock tick. Reading it from
    the process instead (``/proc/<pid>/stat``) waits until the process is through its exec: about 2.5 ms here,
    in which the launcher could do nothing else."""
    return _BOOT + int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS) / _TICKS


def start(
    script: Path, *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path, exit_file: Path, keep: bool = False
) -> Handle:
    """Start ``bash script`` (a ``wrapper_script``) as a child of this process, which reaps it (``keep``: see
    ``Handle``)."""
    with _children_lock:  # (known as ours before ``orphans`` looks at this process's children)
        process, handle = spawn(
            ["bash", str(script)], env=env, cwd=cwd, stdout=stdout, stderr=stderr, exit_file=exit_file
        )
        _children[process.pid] = process
    return dataclasses.replace(handle, keep=keep)


def reap_orphans() -> None:
    """Reap the orphans this process adopted (``orphans.adopt``) that have ended."""
    with _children_lock:
        orphans.reap(set(_children))


PID_SUFFIX = ".pid"
# A pid file's content that names no process. Pid files are reused (``job_dirs``) and never emptied: on ext4,
# truncating a file to nothing makes the file system write its data out at once on close and free its block
# ("auto_da_alloc"), which with the ``discard`` mount option waits for the disk (about 0.2 ms here, per job).
NO_PROCESS = b"\n"


def pid_file(exit_file: Path) -> Path:
    return exit_file.with_suffix(PID_SUFFIX)


def overwrite(fd: int, content: bytes) -> None:
    """Make ``content`` the whole of the (pid) file open as ``fd``, without emptying it first (``NO_PROCESS``)."""
    os.pwrite(fd, content, 0)
    os.ftruncate(fd, len(content))


def find(exit_file: Path, where: str = "") -> Handle | None:
    """The handle of the process started with ``exit_file``, from its pid file; None if it never started (no
    pid file, or a blank one)."""
    try:
        pid, started = pid_file(exit_file).read_text().split("\n")[0].split()
        return Handle(int(pid), float(started), exit_file, where)
    except (FileNotFoundError, ValueError):
        return None


def record_exit(handle: Handle, code: int) -> None:
    """Write down how a process that this one started (``spawn``) ended, before reaping it: a second line in its
    pid file (read back by ``poll``). Raises OSError if it cannot (e.g. its directory is gone)."""
    recorded = os.open(pid_file(handle.exit_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        os.write(recorded, f"\n{code}".encode())
    finally:
        os.close(recorded)


# Processes this server started: kept so that they are reaped (no zombies) and waited on cheaply;
# once reaped, their exit codes stay here for every later poll.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()
_leftovers_stopped: set[tuple[int, float]] = set()  # processes whose leftovers were told to stop (once each)
LEFTOVER_GRACE = 10.0  # seconds what an ended process left running has to stop, unless the caller says
# How long after the grace period what was killed may take to be gone before the process's end is told anyway
# (a process stuck in the kernel does not die until it returns).
KILLED_WAIT_SECONDS = 10.0
# Processes seen ended whose leftovers are not gone yet: when they were seen ended (monotonic), the exit code
# the OS gave (for this process's own children), and whether they were its own (it adopts their orphans).
_ending: dict[tuple[int, float], tuple[float, int | None, bool]] = {}
_exited: dict[tuple[int, float], int | None] = {}
_poll_lock = threading.Lock()  # a node's agent polls its children from many threads at once


def running_children() -> bool:
    """Whether a process this one started (and reaps) still runs."""
    return any(child.poll() is None for child in list(_children.values()))


def _alive(handle: Handle) -> bool:
    child = _children.get(handle.pid)
    if child is not None:
        return child.poll() is None
    try:
        # A zombie still counts: its parent (the launcher) writes its exit file before it reaps it.
        return abs(psutil.Process(handle.pid).create_time() - handle.start) < 0.5
    except psutil.NoSuchProcess:
        return False


def recorded(exit_file: Path) -> tuple[int | None, float | None]:
    """The exit code written down for the process started with ``exit_file`` (``record_exit``, or the exit file
    itself), and when it was written; (None, None) while none is."""
    for path, line in ((pid_file(exit_file), 1), (exit_file, 0)):
        try:
            with open(path) as written:
                return int(written.read().split("\n")[line].strip()), os.fstat(written.fileno()).st_mtime
        except (FileNotFoundError, ValueError, IndexError):
            continue
    return None, None


def poll(handle: Handle, grace: float = LEFTOVER_GRACE) -> Outcome | None:
    """None while the process runs; then its Outcome (exit code from the exit file, else from the OS). What
    the process left running is stopped the first time it is seen ended (``grace``: see ``_stop_leftovers``),
    unless the handle keeps it; until that is gone (dead and reaped, at most ``KILLED_WAIT_SECONDS`` after the
    grace period), the process counts as running: its node is not free for the next one before."""
    key = (handle.pid, handle.start)
    with _poll_lock:  # (polls from several threads: only the first to see a child ended may take it)
        if key in _exited:
            return Outcome(_exited[key])
        if key not in _ending:
            if _alive(handle):
                return None
            child = _children.pop(handle.pid, None)
            os_code = None
            if child is not None and child.returncode is not None:
                os_code = child.returncode if child.returncode >= 0 else 128 - child.returncode
            _ending[key] = (time.monotonic(), os_code, child is not None)
            if key not in _leftovers_stopped and not handle.keep:
                _leftovers_stopped.add(key)
                _stop_leftovers(handle, grace, adopted=child is not None)
        seen, os_code, own = _ending[key]
        if not handle.keep and _left_running(handle, own):
            if time.monotonic() < seen + grace + KILLED_WAIT_SECONDS:
                return None
            log.warning("process %s: what it left running is still there after SIGKILL; its end is told anyway", key)
        del _ending[key]
        code, ended_at = recorded(handle.exit_file)
        if code is None:
            code = os_code
        if own:
            _exited[key] = code
        return Outcome(code, ended_at=ended_at)


def _left_running(handle: Handle, adopted: bool) -> bool:
    """Whether anything of an ended process's session, or (``adopted``) of the orphans this process adopted that
    carry its tag, is still there (reaping those adopted orphans that have ended)."""
    if adopted:
        with _children_lock:
            if orphans.signal_tagged(str(handle.exit_file), handle.pid, {*_children, handle.pid}, 0):
                return True
    try:
        os.killpg(handle.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait(handle: Handle, timeout: float | None = None, grace: float = LEFTOVER_GRACE) -> Outcome | None:
    """Block until the process has ended and what it left running is gone (see ``poll``), or ``timeout``;
    cheap for our own children. ``grace``: as for ``poll``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    child = _children.get(handle.pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
    while (outcome := poll(handle, grace)) is None:
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return outcome


def _stop_leftovers(handle: Handle, grace: float, adopted: bool) -> None:
    """What an ended process left running, in its session and (``adopted``: where this process adopts orphans,
    a node's agent) outside it: SIGTERM now and SIGKILL after ``grace`` seconds, as a stop does, so that a
    job's processes may still save their work when the shell around them has ended."""
    ended = time.time()

    def orphans_of_it(sig: int) -> bool:
        if not adopted:
            return False
        with _children_lock:
            return bool(orphans.signal_tagged(str(handle.exit_file), handle.pid, {*_children, handle.pid}, sig))

    def kill_what_is_left() -> None:
        # Only members of its group from before it ended: the group's id may be a new process's by now.
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(process.pid) == handle.pid and process.create_time() <= ended:
                    process.kill()
        orphans_of_it(signal.SIGKILL)

    left = orphans_of_it(signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(handle.pid, signal.SIGTERM)
        left = True
    if left:
        _after(grace, kill_what_is_left)


def stop_left_on(directory: Path, grace: float) -> list[int]:
    """Stop what still runs from the processes started under ``directory`` (a node's work area, as it is
    released): those whose tag (``orphans.TAG``: their task's exit file) lies below it, with their
    descendants. SIGTERM now and SIGKILL after ``grace`` seconds, without waiting; returns the pids told."""
    told = orphans.tagged_under(directory)
    for process in told:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()

    def kill_what_is_left() -> None:
        for process in told:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.is_running():  # (the same process: psutil compares its start time)
                    process.kill()
        reap_orphans()

    if told:
        _after(grace, kill_what_is_left)
    return [process.pid for process in told]


def _after(seconds: float, action: Callable[[], None]) -> None:
    """Run ``action`` in ``seconds`` (the SIGKILL at the end of a grace period) on a timer thread, without
    waiting for it."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def _tree(handle: Handle) -> list[psutil.Process]:
    try:
        root = psutil.Process(handle.pid)
        if abs(root.create_time() - handle.start) >= 0.5:
            return []
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _wait_procs(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """``psutil.wait_procs``, but this process's own children (``_children``: a node's agent starts its tasks
    itself) are waited for through their Popen: psutil would reap them behind it, and Popen would then read
    exit code 0 for a process that a signal ended. Returns those still alive."""
    deadline = time.monotonic() + timeout
    own = {p.pid: child for p in processes if (child := _children.get(p.pid)) is not None}
    _, alive = psutil.wait_procs([p for p in processes if p.pid not in own], timeout=timeout)
    for process in processes:
        if process.pid in own:
            try:
                own[process.pid].wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                alive.append(process)
    return list(alive)


def stop(handle: Handle, grace: float) -> Outcome:
    """SIGTERM the process tree, wait up to ``grace`` seconds, then SIGKILL what is left. Idempotent."""
    tree = _tree(handle)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
    if tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, signal.SIGTERM)
    alive = _wait_procs(tree, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, signal.SIGKILL)
    _wait_procs(alive, timeout=5)
    # (what it left outside its session has the grace period from now, and then may take a while to be gone)
    return wait(handle, timeout=grace + KILLED_WAIT_SECONDS + 5, grace=grace) or Outcome(None)


def tail(path: Path, lines: int = 10, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of a file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return list(deque((line for line in data.splitlines() if line.strip()), maxlen=lines))
