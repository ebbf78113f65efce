"""Running the server: in the foreground (logs to stderr), or detached in the background with a pid file.

A server holds its home's lock (``server.lock``, ``flock``) for as long as it runs: a second server on the same
home is refused however the two were started, and a pid file left by a server that died names nobody (its pid
may be another process's by now)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import uvicorn

from batchai.config import Settings
from batchai.private_files import private_dir, private_file, try_lock
from batchai.store.db import claim

LOCK_FILE = "server.lock"
log = logging.getLogger("batchai.server")


def hold_home(home: Path) -> int:
    """Take the home's lock for the rest of this process (the returned descriptor stays open; it is not handed
    to child processes). Raises OSError if another server holds it."""
    private_dir(home)
    fd = try_lock(home / LOCK_FILE)
    if fd is None:
        raise OSError(f"a server already runs for home {home}; stop it with 'batchai server stop'")
    return fd


def _held(home: Path) -> bool:
    """Whether a server holds the home's lock."""
    try:
        fd = try_lock(home / LOCK_FILE, create=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)  # (it was free: let go of it again)
    return False


def listen(settings: Settings) -> tuple[socket.socket, Settings]:
    """The server's socket, bound before anything starts: a port in use is a clear error at once, and port 0
    takes a free port, which the returned settings (and so the endpoint in credentials.json) name."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        sock = socket.create_server((settings.host, settings.port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(f"cannot listen on {settings.host}:{settings.port}: {reason}") from exc
    return sock, dataclasses.replace(settings, port=int(sock.getsockname()[1]))


# Set in the environment of the process a supervising server starts (``supervise``): the listening socket's fd.
SERVING_FD = "BATCHAI_SERVING_FD"
RESTART_PAUSE_SECONDS = 1.0
QUICK_EXIT_SECONDS = 10.0  # a serving process that ends this soon after its start, three times running: give up
_PR_SET_PDEATHSIG = 1


def serving_child() -> bool:
    """Whether this process serves for a supervising server (``supervise``), which holds the home."""
    return SERVING_FD in os.environ


def serve(settings: Settings) -> None:
    """Serve in the foreground until SIGINT/SIGTERM. With a Ray cluster, the serving runs in a child process
    that is started again should it end by itself (``supervise``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if serving_child():
        _die_with_parent()
        sock = socket.socket(fileno=int(os.environ.pop(SERVING_FD)))  # (not handed on to what it starts)
        _serve_app(dataclasses.replace(settings, port=int(sock.getsockname()[1])), sock)
        return
    with _holding(settings.home):
        sock, settings = listen(settings)
        if settings.ray_address:
            supervise(sock)
        else:
            _serve_app(settings, sock)


@contextlib.contextmanager
def _holding(home: Path) -> Iterator[None]:
    """The home's lock and its pid file (this process's), for as long as this process serves it."""
    lock = hold_home(home)
    pid_file = home / "server.pid"
    pid_file.write_text(str(os.getpid()))
    try:
        yield
    finally:
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
        os.close(lock)


def supervise(sock: socket.socket) -> None:
    """Serve from a child process and start it again whenever it ends by itself, until SIGINT/SIGTERM. Ray's
    driver, which runs in the serving process, ends that process when the Ray cluster's head goes away (after
    ``gcs_rpc_server_reconnect_timeout_s``, or at once when a new head answers at its address): the home, its
    lock and the listening socket stay with this process, and a new child serves (and reaches Ray once it is
    back) on the same port. The child dies with this process, however this one ends."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    argv = [sys.executable, "-m", "batchai", *sys.argv[1:]]
    env = {**os.environ, SERVING_FD: str(sock.fileno())}
    quick = 0
    while not stopping:
        started = time.monotonic()
        # Its own process group: a terminal's Ctrl-C reaches this process, which passes it on once.
        child = subprocess.Popen(argv, env=env, pass_fds=[sock.fileno()], process_group=0)
        code = child.wait()
        if stopping or code == 0:
            return
        quick = quick + 1 if time.monotonic() - started < QUICK_EXIT_SECONDS else 0
        if quick >= 3:
            log.error("the serving process keeps ending at once (exit code %s); giving up", code)
            raise SystemExit(1)
        log.warning("the serving process ended by itself (exit code %s); starting it again", code)
        time.sleep(RESTART_PAUSE_SECONDS)


def _die_with_parent() -> None:
    """A serving child ends with its supervising server (even one that is SIGKILLed)."""
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent or parent == 1:  # (it died before the call)
        os.kill(os.getpid(), signal.SIGKILL)


def _serve_app(settings: Settings, sock: socket.socket) -> None:
    """Run the API on ``sock`` until SIGINT/SIGTERM."""
    from batchai.api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=5,  # open keep-alive connections must not hold a stop for long
        ssl_certfile=str(settings.certfile) if settings.certfile else None,
        ssl_keyfile=str(settings.keyfile) if settings.keyfile else None,
    )
    with claim(settings.database_url):
        uvicorn.Server(config).run(sockets=[sock])


def running_pid(home: Path) -> int | None:
    """The pid of this home's server if one runs: it holds the home's lock, or (started by a batchai from before
    the lock) its command line says it serves this home."""
    pid_file = home / "server.pid"
    try:
        pid = int(pid_file.read_text().strip())
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return pid if _held(home) or _serves(process.cmdline(), home) else None
    except (FileNotFoundError, ValueError, psutil.Error):
        return None


def _serves(cmdline: list[str], home: Path) -> bool:
    """Whether a command line is that of a server of ``home`` (``... server start --home HOME ...``)."""
    words = list(cmdline)
    return (
        "server" in words
        and "start" in words
        and any(word == "--home" and i + 1 < len(words) and Path(words[i + 1]) == home for i, word in enumerate(words))
    )


def answers(settings: Settings) -> str | None:
    """The endpoint, once the home's server answers there (as credentials.json names it) with its token."""
    try:
        credentials = json.loads(settings.credentials_file.read_text())
        endpoint, token = str(credentials["endpoint"]), credentials["token"]
        response = httpx.get(
            f"{endpoint}/providers/Microsoft.BatchAI/operations?api-version=2018-05-01",
            headers={"Authorization": f"Bearer {token}"},
            timeout=2,
            verify=False,
        )
        return endpoint if response.status_code == 200 else None
    except (OSError, KeyError, ValueError, httpx.HTTPError):
        return None


def start_detached(settings: Settings, timeout: float = 60.0) -> tuple[int, str]:
    """Start the server in a new session, logging to ``{home}/server.log``; once it answers, its pid and
    endpoint."""
    private_dir(settings.home)  # (its database holds the jobs' secrets)
    args = [
        sys.executable,
        "-m",
        "batchai",
        "server",
        "start",
        "--home",
        str(settings.home),
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--database-url",
        settings.database_url,
    ]
    if settings.certfile and settings.keyfile:
        args += ["--certfile", str(settings.certfile), "--keyfile", str(settings.keyfile)]
    if settings.containers_on_host:
        args.append("--containers-on-host")
    if settings.ray_address:
        args += ["--ray-address", settings.ray_address, "--ray-resource", settings.ray_resource]
    log_path = settings.home / "server.log"
    private_file(log_path)
    with open(log_path, "ab") as log_file:
        offset = log_file.tell()
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, "rb") as log_file:
                log_file.seek(offset)
                lines = log_file.read().decode(errors="replace").strip().splitlines() or ["no output"]
            # Its error line (another server of the home may be logging in the same file meanwhile).
            last = next((line for line in reversed(lines) if line.startswith("ERROR: ")), lines[-1])
            last = last.removeprefix("ERROR: ")
            raise RuntimeError(f"the server exited with code {process.returncode}: {last} (see {log_path})")
        endpoint = answers(settings)
        if endpoint is not None and running_pid(settings.home) == process.pid:  # (it answers, not another)
            return process.pid, endpoint
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"the server did not answer within {timeout:.0f}s (see {log_path})")


def stop(home: Path, timeout: float = 15.0) -> bool:
    """SIGTERM the home's server, SIGKILL after ``timeout``; False if none ran."""
    pid = running_pid(home)
    if pid is None:
        return False
    process = psutil.Process(pid)
    process.send_signal(signal.SIGTERM)
    if not _ended(process, timeout):
        process.kill()
        _ended(process, 5)
    (home / "server.pid").unlink(missing_ok=True)
    return True


def _ended(process: psutil.Process, timeout: float) -> bool:
    """Whether the process ends within ``timeout`` seconds: exits, or is left for its parent to reap (the
    server's parent need not be this process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
