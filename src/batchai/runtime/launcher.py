"""The launcher: one long-lived process per server home that starts the processes of local nodes and
records how they end.

The server asks it to start a process instead of forking itself, for three reasons: a fork of a small
process is cheaper than one of the server; a plain command (``python train.py --epochs 2``) then runs
without a shell around it to record its exit code; and processes still outlive a restart of the server,
because the launcher, not the server, is their parent. It writes each process's exit code down *before* it
reaps the process (a line added to its pid file, ``supervisor.record_exit``), so whoever sees a process gone
finds how it ended; then it tells every connected
server, and stops what the process left running, in its session or outside it (``orphans``: daemons become
the launcher's children): SIGTERM, and SIGKILL after the request's grace period; unless the request said
``keep`` (a setup task: what it leaves running lives until its node is released, see ``Handle.keep``).

Protocol: newline-delimited JSON over the Unix socket ``launcher.sock`` in the server home's ``run``
directory (mode 0700; a peer of another user is refused).

    server -> launcher  {"id": n, "argv": [...], "fallback": [...] or null, "env": {...},
                         "cwd": ..., "stdout": ..., "stderr": ..., "exit_file": ..., "grace": seconds,
                         "keep": false, "after": [pid, start] or absent}
                        {"id": n, "cancel": m}          drop request m if it has not started yet
    launcher -> server  {"hello": <launcher pid>, "running": [[pid, start], ...]}    on connecting
                        {"id": n, "pid": p, "start": t} or {"id": n, "error": "..."}  per request
                        {"id": n, "cancelled": true or false}                      per cancel
                        {"exit": p, "start": t, "code": c, "at": epoch seconds}     to every server,
                                            once what the process left running is gone too

A request with ``after`` is a follower: it starts the moment that process (one of the launcher's) has
ended and what it left running is gone, before its end is told, so that a node's next job starts without
waiting for the server (its reply comes then); its files (output, pid file) are opened as it arrives, so
that little more than a fork lies between the two. A follower of a process that is not the launcher's (any
more) starts at once. Followers belong to their connection: they are dropped when it closes, and a
cancel answers false once the follower has started (its reply went first).

``fallback`` is what to start if ``argv`` cannot be (e.g. a ``bash`` script that reports the error the
way a shell does). The launcher ends once no server is connected and nothing it started still runs, or
when no server connects within ``FIRST_CLIENT_SECONDS`` of its start; not on SIGTERM, so that the ends of
what it started are still recorded (SIGKILL ends it at once: what it started then runs on unrecorded).

Run as ``python -m batchai.runtime.launcher <run dir>``; the server side is ``LauncherClient``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from batchai.runtime import orphans, supervisor
from batchai.runtime.supervisor import Handle, Outcome

SOCKET_NAME = "launcher.sock"
LEFTOVER_LOOK_SECONDS = 0.2  # how often it looks whether what an ended process left running has ended
DEFAULT_GRACE = 10.0  # seconds what an ended process left running has to stop, unless its request says
_SIGNALS = "signals"  # the selector's mark of the socket signals wake it through
FIRST_CLIENT_SECONDS = 30.0
CONNECT_SECONDS = 20.0
REPLY_SECONDS = 60.0
PARENT_LOOK_SECONDS = 0.5  # how often a launcher no server has connected to yet looks whether its own still runs
KNOWN_OUTCOMES = 4096  # ended processes remembered for polls that come after their exit message

log = logging.getLogger(__name__)


def _address(directory_fd: int) -> str:
    """The socket's path through an open directory: it fits a Unix socket address (108 bytes) however
    long the server home's path is."""
    return f"/proc/self/fd/{directory_fd}/{SOCKET_NAME}"


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


# -- the launcher process ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Waiting:
    """A request of ``conn`` waiting for a process to end (``after``), with its files opened meanwhile: so that
    starting it, once that process has ended, is little more than a fork."""

    conn: socket.socket
    request: dict[str, Any]
    outputs: supervisor.Outputs | None  # (None if they could not be opened: its start then says why)

    @classmethod
    def on(cls, conn: socket.socket, request: dict[str, Any]) -> Waiting:
        try:
            paths = [Path(request[name]) for name in ("stdout", "stderr", "exit_file")]
            outputs = supervisor.open_outputs(*paths)
        except OSError:
            outputs = None
        return cls(conn, request, outputs)

    def close(self) -> None:
        if self.outputs is not None:
            self.outputs.close()


class Launcher:
    """The launcher's loop: one thread, a selector over the listening socket, the servers' connections and
    a pidfd per running process."""

    def __init__(self, listener: socket.socket, parent: int | None = None) -> None:
        self.parent = parent  # the server that started it (until one connects: it may die first)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.listener = listener
        self.clients: dict[socket.socket, bytearray] = {}
        self.children: dict[int, tuple[subprocess.Popen[bytes], Handle, int | None]] = {}
        self.graces: dict[int, float] = {}  # each child's grace period (the request's, else DEFAULT_GRACE)
        self.kept: set[int] = set()  # children whose leftovers live on when they end (``keep``)
        # What ended processes left running, told to stop: their end is told once it is gone (its node is not
        # free for the next job until then).
        self.leftovers: list[Leftovers] = []
        # Requests waiting for a process to end (``after``), by that process.
        self.followers: dict[tuple[int, float], list[Waiting]] = {}
        # The orphans it adopts (orphans.adopt) end with no pidfd of its own: SIGCHLD wakes the loop to reap them.
        self.signals: list[socket.socket] = []
        if threading.current_thread() is threading.main_thread():
            self.signals = list(socket.socketpair())
            for end in self.signals:
                end.setblocking(False)
            signal.set_wakeup_fd(self.signals[1].fileno(), warn_on_full_buffer=False)
            signal.signal(signal.SIGCHLD, lambda *_: None)
            # SIGTERM (``pkill -f batchai``, a service manager stopping the server) does not end it while what it
            # started runs: their ends are still recorded. It ends as it always does, once idle and unserved. (A
            # handler, not SIG_IGN, which its children would inherit.)
            signal.signal(signal.SIGTERM, lambda *_: log.info("launcher %s: SIGTERM; it ends once idle", os.getpid()))
            self.selector.register(self.signals[0], selectors.EVENT_READ, _SIGNALS)

    def run(self) -> None:
        deadline = time.monotonic() + FIRST_CLIENT_SECONDS
        served = False
        while True:
            served = served or bool(self.clients)
            idle = not self.clients and not self.children and not self.leftovers
            if idle and (served or time.monotonic() >= deadline):
                return
            if not served and self.parent is not None and os.getppid() != self.parent:
                log.info("launcher %s ends: the server that started it stopped before it connected", os.getpid())
                return
            timeout: float | None = None
            if not served:  # (looking now and then whether the server that started it still runs)
                timeout = max(0.0, min(PARENT_LOOK_SECONDS, deadline - time.monotonic()))
            if self.children and not hasattr(os, "pidfd_open"):
                timeout = 0.05  # no pidfds: look at the processes twenty times a second
            if self.leftovers:  # look again soon whether they have ended, and kill them when their time is up
                due = max(0.0, min(LEFTOVER_LOOK_SECONDS, *(x.deadline - time.monotonic() for x in self.leftovers)))
                timeout = due if timeout is None else min(timeout, due)
            signalled = accept = False
            for key, _ in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    accept = True
                elif key.data == _SIGNALS:
                    with contextlib.suppress(BlockingIOError):
                        self.signals[0].recv(4096)
                    signalled = True
                elif isinstance(key.fileobj, socket.socket):
                    self._read(key.fileobj)
            if accept:  # after the reads: the followers of a server that went away are gone before a new one is
                self._accept()
            if signalled:  # (before looking at leftovers: one killed is gone once reaped)
                orphans.reap(self.children.keys())
            self._settle_ended()
            self._kill_leftovers()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        if not _same_user(conn):
            conn.close()
            return
        self.clients[conn] = bytearray()
        self.selector.register(conn, selectors.EVENT_READ, None)
        running = [[pid, handle.start] for pid, (_, handle, _) in self.children.items()]
        running += [[x.message["exit"], x.message["start"]] for x in self.leftovers]  # (not told yet)
        self._send(conn, {"hello": os.getpid(), "running": running})

    def _drop(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        self._discard_followers(lambda follower: follower.conn is conn)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        conn.close()

    def _send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        try:
            conn.sendall(_encode(message))
        except OSError:
            self._drop(conn)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buffer = self.clients[conn]
        buffer += data
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            try:
                request = json.loads(line)
                if "cancel" in request:
                    reply = {"id": request["id"], "cancelled": self._cancel(conn, int(request["cancel"]))}
                elif request.get("after") and self._running(
                    after := (int(request["after"][0]), float(request["after"][1]))
                ):
                    self.followers.setdefault(after, []).append(Waiting.on(conn, request))
                    continue  # answered once it starts
                else:
                    reply = {"id": request["id"], **self._start(request)}
            except (ValueError, KeyError, TypeError, IndexError) as exc:  # not our protocol: not a server of ours
                log.warning("dropping a client that sent something else than a request (%s)", type(exc).__name__)
                self._drop(conn)
                return
            self._send(conn, reply)

    def _running(self, key: tuple[int, float]) -> bool:
        """Whether that process of the launcher's has not ended yet, or what it left running is not gone yet."""
        child = self.children.get(key[0])
        if child is not None and child[1].start == key[1]:
            return True
        return any(x.message["exit"] == key[0] and x.message["start"] == key[1] for x in self.leftovers)

    def _cancel(self, conn: socket.socket, request_id: int) -> bool:
        """Drop a follower of ``conn`` that has not started; False if there is none (it started already)."""
        return self._discard_followers(lambda follower: follower.conn is conn and follower.request["id"] == request_id)

    def _discard_followers(self, matches: Callable[[Waiting], bool]) -> bool:
        """Drop the followers that ``matches``, closing their files; whether there was any."""
        found = False
        for key, waiting in list(self.followers.items()):
            kept = []
            for follower in waiting:
                if matches(follower):
                    follower.close()
                    found = True
                else:
                    kept.append(follower)
            if kept:
                self.followers[key] = kept
            else:
                del self.followers[key]
        return found

    def _start_followers(self, message: dict[str, Any]) -> dict[socket.socket, list[dict[str, Any]]]:
        """Start what waited for the process ``message`` tells the end of; the replies to send, by connection."""
        replies: dict[socket.socket, list[dict[str, Any]]] = {}
        for follower in self.followers.pop((message["exit"], message["start"]), []):
            if follower.conn in self.clients:
                reply = {"id": follower.request["id"], **self._start(follower.request, follower.outputs)}
                replies.setdefault(follower.conn, []).append(reply)
            else:
                follower.close()
        return replies

    def _start(self, request: dict[str, Any], outputs: supervisor.Outputs | None = None) -> dict[str, Any]:
        files = {
            "env": request["env"],
            "cwd": Path(request["cwd"]),
            "stdout": Path(request["stdout"]),
            "stderr": Path(request["stderr"]),
            "exit_file": Path(request["exit_file"]),
        }
        try:
            try:
                process, handle = supervisor.spawn(request["argv"], **files, outputs=outputs)
            except OSError:
                if not request.get("fallback"):
                    raise
                process, handle = supervisor.spawn(request["fallback"], **files)
        except OSError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            pidfd = os.pidfd_open(process.pid)
            self.selector.register(pidfd, selectors.EVENT_READ, process.pid)
        self.children[process.pid] = (process, handle, pidfd)
        self.graces[process.pid] = float(request.get("grace", DEFAULT_GRACE))
        if request.get("keep"):
            self.kept.add(process.pid)
        return {"pid": process.pid, "start": handle.start}

    def _settle_ended(self) -> None:
        """Record, clean up after, reap and announce every process that ended."""
        for pid, (process, handle, pidfd) in list(self.children.items()):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped behind our back: how it ended is unknown
                log.warning("process %s was reaped by someone else", pid)
                info = None
                self._forget(pid, pidfd)
            if info is None:
                continue
            code = info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status
            with contextlib.suppress(OSError):  # its directory may be gone (a node released meanwhile)
                supervisor.record_exit(handle, code)
            process.wait()
            grace, keep = self.graces.get(pid, DEFAULT_GRACE), pid in self.kept
            self._forget(pid, pidfd)
            message = {"exit": pid, "start": handle.start, "code": code, "at": time.time()}
            # What it left running, in its session or outside it (daemons, orphaned to this process: see
            # orphans.adopt), is told to stop now and killed after the grace period: as a stop of the process
            # would, so that a job's processes may still save their work when the shell around them ends. The
            # servers hear of the end once that is gone (its node is not free before).
            told: set[int] = set()
            if not keep and self._signal_leftovers(pid, str(handle.exit_file), signal.SIGTERM, told):
                self.leftovers.append(Leftovers(time.monotonic() + grace, pid, str(handle.exit_file), message, told))
            else:
                self._announce(message)

    def _announce(self, message: dict[str, Any]) -> None:
        """Start the followers of the process that ended, then tell every server of its end: to the server that
        asked for a follower, its start and the end in one write, which it reads (and acts on) at once."""
        replies = self._start_followers(message)
        for conn in list(self.clients):
            try:
                conn.sendall(b"".join(_encode(m) for m in [*replies.get(conn, []), message]))
            except OSError:
                self._drop(conn)

    def _signal_leftovers(self, session: int, task: str, sig: int, told: set[int]) -> bool:
        """Send ``sig`` (0: none) to what the process that led ``session`` left running; whether anything was.
        ``told``: the daemons sent SIGTERM so far. A look (``sig`` 0) sends it to those adopted since the process
        ended (their parent outlived it a while): each daemon is told once, and killed with the rest when the
        grace period is over."""
        left = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session, sig)
            left = True
        if daemons := orphans.signal_tagged(task, session, self.children.keys(), sig):
            if sig == signal.SIGTERM:
                log.info("process %s left %s outside its session", session, daemons)
            elif sig == 0 and (late := [pid for pid in daemons if pid not in told]):
                log.info("process %s left %s outside its session", session, late)
                for pid in late:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGTERM)
            told.update(daemons)
            left = True
        return left

    def _kill_leftovers(self) -> None:
        """Kill what ended processes left running when its grace period is over; once it is gone, announce the
        process's end. Killed is not gone: a process sent SIGKILL still holds what it held (its memory, a GPU's)
        until it has died and been reaped, so the end waits for that too (at most
        ``supervisor.KILLED_WAIT_SECONDS``)."""
        now = time.monotonic()
        still = []
        for left in self.leftovers:
            if not left.killed and left.deadline <= now:
                left.killed, left.deadline = True, now + supervisor.KILLED_WAIT_SECONDS
            # (once killed, again at every look: a daemon adopted since is killed too)
            if self._signal_leftovers(left.session, left.task, signal.SIGKILL if left.killed else 0, left.told):
                if left.deadline > now:
                    still.append(left)
                    continue
                log.warning(
                    "process %s: what it left running is still there %gs after SIGKILL; its end is told anyway",
                    left.session,
                    supervisor.KILLED_WAIT_SECONDS,
                )
            self._announce(left.message)
        self.leftovers = still

    def _forget(self, pid: int, pidfd: int | None) -> None:
        if pidfd is not None:
            self.selector.unregister(pidfd)
            os.close(pidfd)
        del self.children[pid]
        self.graces.pop(pid, None)
        self.kept.discard(pid)


@dataclass
class Leftovers:
    """What an ended process left running, told to stop (SIGTERM): in its session (``session``, the process's
    pid) or outside it (daemons carrying ``task``'s tag; ``told``: those sent SIGTERM so far). ``deadline``:
    when it is killed, or once ``killed``, when the process's end (``message``) is told even if it is not gone."""

    deadline: float
    session: int
    task: str
    message: dict[str, Any]
    told: set[int]
    killed: bool = False


def serve(run_dir: Path, parent: int | None = None) -> None:
    """Listen on ``run_dir``'s socket (replacing a stale one) and run until idle. ``parent``: the pid of the
    server that started it; should that server stop before it connects, the launcher ends (no other server
    knows of it yet: a server started since starts its own)."""
    if parent is not None and os.getppid() != parent:
        log.info("launcher %s not started: the server that started it has stopped", os.getpid())
        return
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_NAME, dir_fd=directory)
        listener.bind(_address(directory))
        listener.listen(16)
        adopting = orphans.adopt()  # a job's daemons become ours, to end with the job
        log.info("launcher %s listening in %s (adopting orphans: %s)", os.getpid(), run_dir, adopting)
        Launcher(listener, parent).run()
        log.info("launcher %s ends: no server is connected and nothing runs", os.getpid())
    except Exception:
        log.exception("launcher %s failed; the processes it started run on unrecorded", os.getpid())
        raise
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_NAME, dir_fd=directory)
        os.close(directory)


# -- the server's side ------------------------------------------------------------------------------------
class LauncherError(OSError):
    """The launcher could not be reached, or could not start a process."""


class LauncherClient:
    """The server's connection to its home's launcher: it starts one when none runs, asks it to start
    processes, and hears of their ends. Thread-safe; ``close`` is idempotent."""

    def __init__(self, run_dir: Path, python: str = sys.executable) -> None:
        self.run_dir = run_dir
        self.python = python
        self._lock = threading.Lock()  # the state below
        self._sending = threading.Lock()  # one request at a time on the socket
        self._conn: socket.socket | None = None
        self._spawned: subprocess.Popen[bytes] | None = None
        self._launcher_pid = 0
        self._next_id = 0
        self._replies: dict[int, tuple[socket.socket, Future[dict[str, Any]]]] = {}  # by request id
        self._running: set[tuple[int, float]] = set()
        self._ended: dict[tuple[int, float], Outcome] = {}
        self._callbacks: dict[tuple[int, float], list[Callable[[], None]]] = {}

    # connection
    def _connect(self, again: bool = False) -> socket.socket:
        """The live connection, connecting (and starting the launcher) first if needed. Holds the lock.
        ``again``: once more after a launcher that ended as it was reached (one whose server had stopped)."""
        if self._conn is not None:
            return self._conn
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.run_dir, 0o700)
        conn = self._dial()
        if conn is None:
            if self._spawned is not None:
                self._spawned.poll()  # reap an earlier one that ended
            with open(self.run_dir / "launcher.log", "ab") as out:
                self._spawned = subprocess.Popen(
                    [self.python, "-m", "batchai.runtime.launcher", str(self.run_dir), str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            deadline = time.monotonic() + CONNECT_SECONDS
            while (conn := self._dial()) is None:
                if self._spawned.poll() is not None or time.monotonic() > deadline:
                    raise LauncherError(f"the process launcher did not start (see {self.run_dir / 'launcher.log'})")
                time.sleep(0.01)
        reader = conn.makefile("rb")
        conn.settimeout(CONNECT_SECONDS)
        try:
            hello = json.loads(reader.readline() or b"{}")
        except (OSError, ValueError):
            hello = {}
        conn.settimeout(None)
        if "hello" not in hello:
            conn.close()
            if not again:
                return self._connect(again=True)
            raise LauncherError("the process launcher did not answer")
        self._launcher_pid = int(hello["hello"])
        self._running = {(int(pid), float(start)) for pid, start in hello["running"]}
        self._conn = conn
        threading.Thread(target=self._listen, args=(conn, reader), name="launcher-events", daemon=True).start()
        return conn

    def _dial(self) -> socket.socket | None:
        directory = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(_address(directory))
            return conn
        except OSError:
            conn.close()
            return None
        finally:
            os.close(directory)

    def _listen(self, conn: socket.socket, reader: BinaryIO) -> None:
        try:
            for line in reader:
                message = json.loads(line)
                if "exit" in message:
                    outcome = Outcome(int(message["code"]), ended_at=message.get("at"))
                    self._exited((int(message["exit"]), float(message["start"])), outcome)
                elif "id" in message:
                    with self._lock:
                        _, future = self._replies.pop(int(message["id"]), (conn, None))
                    if future is not None:
                        future.set_result(message)
        except (OSError, ValueError) as exc:
            log.debug("launcher connection ended: %s", exc)
        with self._lock:
            if self._conn is conn:
                self._conn = None
                self._running.clear()  # the server polls what it had started from now on
            lost = [i for i, (asked, _) in self._replies.items() if asked is conn]
            pending = [self._replies.pop(i)[1] for i in lost]
        for future in pending:
            future.set_exception(LauncherError("the connection to the process launcher was lost"))
        reader.close()
        conn.close()

    def _exited(self, key: tuple[int, float], outcome: Outcome) -> None:
        with self._lock:
            self._running.discard(key)
            self._ended[key] = outcome
            if len(self._ended) > KNOWN_OUTCOMES:
                del self._ended[next(iter(self._ended))]
            callbacks = self._callbacks.pop(key, [])
        for callback in callbacks:
            callback()

    # processes
    def _request(self, request: dict[str, Any]) -> tuple[int, Future[dict[str, Any]]]:
        """Send a request; its id and the future of its reply. Raises LauncherError if it cannot be sent."""
        future: Future[dict[str, Any]] = Future()
        for attempt in (1, 2):  # once more on a new connection if the launcher was gone
            with self._lock:
                conn = self._connect()
                self._next_id += 1
                request_id = request["id"] = self._next_id
                self._replies[request_id] = (conn, future)
            try:
                with self._sending:  # not under the state lock: the reader needs it to take replies meanwhile
                    conn.sendall(_encode(request))
                return request_id, future
            except OSError as exc:
                with self._lock:
                    self._replies.pop(request_id, None)
                    if self._conn is conn:
                        self._conn = None
                if attempt == 2:
                    raise LauncherError(f"the process launcher could not be asked: {exc}") from exc
        raise AssertionError("unreachable")

    def _started(self, reply: dict[str, Any], exit_file: Path, keep: bool) -> Handle:
        if "error" in reply:
            raise LauncherError(reply["error"])
        handle = Handle(int(reply["pid"]), float(reply["start"]), exit_file, keep=keep)
        with self._lock:
            if (handle.pid, handle.start) not in self._ended:
                self._running.add((handle.pid, handle.start))
        return handle

    def start(self, spawn: Spawn) -> Handle:
        """Start a process (see ``supervisor.spawn``); raises LauncherError if it cannot."""
        _, future = self._request(spawn.request())
        return self._started(future.result(REPLY_SECONDS), spawn.exit_file, spawn.keep)

    def follows(self, handle: Handle) -> bool:
        """Whether a process can follow ``handle`` (``follow``): the connected launcher runs it."""
        with self._lock:
            return self._conn is not None and (handle.pid, handle.start) in self._running

    def follow(self, after: Handle, spawn: Spawn) -> Follower:
        """Start a process the moment ``after`` has ended (what it left running gone too), without a round
        trip to the server; at once if ``after`` is not running any more. The follower's ``handle`` resolves
        to its Handle then (or raises LauncherError: it could not start, or the launcher was lost before)."""
        request = {**spawn.request(), "after": [after.pid, after.start]}
        request_id, reply = self._request(request)
        handle: Future[Handle] = Future()

        def resolve(done: Future[dict[str, Any]]) -> None:  # (in the reader's thread, before later messages)
            try:
                handle.set_result(self._started(done.result(), spawn.exit_file, spawn.keep))
            except Exception as exc:
                handle.set_exception(exc)

        reply.add_done_callback(resolve)
        return Follower(request_id, handle)

    def cancel(self, follower: Follower) -> bool:
        """Drop a follower that has not started: True if it never will; False if it started (its ``handle``
        is resolved by then) or may have (the launcher could not be asked: its exit file tells)."""
        if follower.handle.done():
            return follower.handle.cancelled()
        try:
            _, future = self._request({"cancel": follower.request_id})
            cancelled = bool(future.result(REPLY_SECONDS)["cancelled"])
        except (LauncherError, TimeoutError, KeyError):
            return False
        if cancelled:
            with self._lock:
                self._replies.pop(follower.request_id, None)
            follower.handle.cancel()
        return cancelled

    def outcome(self, handle: Handle) -> Outcome | None:
        """How the process ended; None while it runs (known without a system call for the processes of a
        connected launcher); else what its exit file and the OS say."""
        key = (handle.pid, handle.start)
        with self._lock:
            if key in self._ended:
                return self._ended[key]
            if key in self._running and self._conn is not None:
                return None
        return supervisor.poll(handle)

    def watch(self, handle: Handle, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once the process ends (at once if it already has); False if the launcher does
        not run it (e.g. it was started by an earlier launcher that is gone)."""
        key = (handle.pid, handle.start)
        with self._lock:
            try:
                self._connect()
            except LauncherError:
                return False
            if key in self._ended:
                ended = True
            elif key in self._running:
                self._callbacks.setdefault(key, []).append(callback)
                ended = False
            else:
                return False
        if ended:
            callback()
        return True

    def close(self) -> None:
        """Disconnect; the launcher ends by itself once nothing it started runs. Waits for it to end if
        nothing runs, so that no process of the home outlives the server needlessly."""
        with self._lock:
            conn, self._conn = self._conn, None
            idle = not self._running
            self._callbacks.clear()
        if conn is None:
            return
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        if not idle:
            return
        if self._spawned is not None and self._spawned.pid == self._launcher_pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._spawned.wait(10)
            return
        with contextlib.suppress(psutil.Error):
            psutil.Process(self._launcher_pid).wait(10)


@dataclass(frozen=True)
class Follower:
    """A process waiting (in the launcher) for another to end before it starts: see ``LauncherClient.follow``."""

    request_id: int
    handle: Future[Handle]


@dataclass(frozen=True)
class Spawn:
    """A process for the launcher to start (``supervisor.spawn``): ``fallback`` is started if ``argv`` cannot
    be; when it ends, what it left running has ``grace`` seconds to stop, or lives on (``keep``: see
    ``Handle.keep``)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    exit_file: Path
    fallback: list[str] | None = None
    grace: float = DEFAULT_GRACE
    keep: bool = False

    def request(self) -> dict[str, Any]:
        """The request that asks for it (see the protocol above)."""
        return {
            "argv": self.argv,
            "fallback": self.fallback,
            "env": self.env,
            "cwd": str(self.cwd),
            "stdout": str(self.stdout),
            "stderr": str(self.stderr),
            "exit_file": str(self.exit_file),
            "grace": self.grace,
            "keep": self.keep,
        }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launcher %(levelname)s %(message)s")
    serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)


if __name__ == "__main__":
    main()
