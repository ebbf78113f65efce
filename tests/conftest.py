"""Shared fixtures: a real batchai server in a temporary home, its HTTP client, and the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

API = "2018-05-01"
SUB = "00000000-0000-0000-0000-000000000000"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll until ``condition()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class PortTaken(Exception):
    """The server could not listen: its port was taken."""


@dataclass
class Server:
    """A batchai server process with its home; ``http`` is authenticated, ``cli`` runs the real CLI."""

    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    http: httpx.Client = field(init=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return str(json.loads((self.home / "credentials.json").read_text())["token"])

    def start(self) -> None:
        """Start the server and wait until it answers. On a first start, a port another test's server took
        meanwhile (tests run in parallel: ``free_port`` only finds a port free at that moment) is exchanged
        for another one; a restart keeps its port."""
        first = self.process is None
        for _ in range(3):
            try:
                self._start_once()
                return
            except PortTaken:
                if not first:
                    raise
                self.port = free_port()
        raise AssertionError("the server found no free port in three tries")

    def _start_once(self) -> None:
        log_path = self.home / "test-server.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [str(BIN / "batchai"), "server", "start", "--home", str(self.home), "--port", str(self.port)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "BATCHAI_GRACE_SECONDS": "3", **self.env},
        )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                output = log_path.read_bytes()[offset:].decode(errors="replace")
                if "cannot listen on" in output and "in use" in output:
                    raise PortTaken(output)
                raise AssertionError("server exited: " + output[-2000:])
            try:
                return (
                    httpx.get(f"{self.endpoint}/openapi.json", timeout=1).status_code == 200
                    and (self.home / "credentials.json").exists()
                )
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, message="the server to answer")
        self.http = httpx.Client(base_url=self.endpoint, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.http.close()
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def cli(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> CliResult:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
        environ["BATCHAI_HOME"] = str(self.home)
        environ.update(env or {})
        proc = subprocess.run(
            [str(BIN / "batchai"), *args],
            capture_output=True,
            text=True,
            input=input,
            env=environ,
            cwd=cwd,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Any:
        """Run the CLI, assert success, and return its JSON output (or None when it printed nothing)."""
        result = self.cli(*args, **kwargs)
        assert result.code == 0, f"batchai {' '.join(args)} failed: {result.stderr}"
        return result.json() if result.stdout.strip() else None

    def fails(self, *args: str, **kwargs: Any) -> str:
        """Run the CLI, assert a one-line error and a non-zero exit, and return that line."""
        result = self.cli(*args, **kwargs)
        assert result.code != 0, f"batchai {' '.join(args)} unexpectedly succeeded: {result.stdout}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one error line, got: {result.stderr}"
        assert "Traceback" not in result.stderr
        assert lines[0].startswith("ERROR: "), lines[0]
        return lines[0]


def arm_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an ARM error body with ``status`` and return its ``error`` object."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "target", "details"}, error
    assert error["code"] and error["message"]
    return dict(error)


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts); it may be reaped between two looks."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def no_children_left(pid: int) -> None:
    assert process_gone(pid)


def leftovers(home: Path) -> list[psutil.Process]:
    """Processes still running from a server home (job and setup scripts live under it)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(home) in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def with_children(processes: Iterable[psutil.Process]) -> set[psutil.Process]:
    """The processes and all their descendants, taken now (while they are still their children)."""
    found = set(processes)
    for process in list(found):
        with contextlib.suppress(psutil.NoSuchProcess):
            found.update(process.children(recursive=True))
    return found


def end_processes(
    processes: Iterable[psutil.Process], patience: float = 0.0, timeout: float = 5.0
) -> list[psutil.Process]:
    """Let the processes end by themselves for ``patience`` seconds, kill those still running, and wait up to
    ``timeout`` seconds for them; returns those that did not end even then."""
    _, alive = psutil.wait_procs(list(processes), timeout=patience)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, still = psutil.wait_procs(alive, timeout=timeout)
    return list(still)


def assert_nothing_left(home: Path) -> None:
    """Fail if a process of the home outlived its server; kill it either way so nothing leaks."""
    left = leftovers(home)
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert not left, f"processes left behind: {[p.info['cmdline'] for p in left]}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(home=tmp_path / "home", port=free_port())
    srv.home.mkdir()
    srv.start()
    pid = srv.process.pid if srv.process else 0
    try:
        yield srv
    finally:
        srv.stop()
        assert_nothing_left(srv.home)
        no_children_left(pid)
        assert_nothing_left(srv.home)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module's read-mostly tests (each test uses its own resource group)."""
    srv = Server(home=tmp_path_factory.mktemp("home"), port=free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        assert_nothing_left(srv.home)


def url(path: str, api: str = API) -> str:
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}api-version={api}"


@pytest.fixture(scope="session")
def seed_job_json() -> str:
    """The job.json of the seed quickstart (``../shared/seeds/000_*``), as published."""
    import re

    seeds = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    text = next(seeds.glob("000_*.txt")).read_text()
    return str(next(b for b in re.findall(r"```json\n(.*?)```", text, re.S) if "$schema" in b))


class Shouting(socketserver.BaseRequestHandler):
    """A service on a node's port (for port forwarding): answers every chunk it receives in capitals."""

    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data.upper())


@pytest.fixture
def service_port() -> Iterator[int]:
    """The port of a ``Shouting`` service on 127.0.0.1."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Shouting) as service:
        service.daemon_threads = True
        threading.Thread(target=service.serve_forever, daemon=True).start()
        yield int(service.server_address[1])
        service.shutdown()


def answer_through(local: int, text: str) -> str:
    """A command line (for a node: this host) that sends ``text`` to a local port and prints the answer."""
    code = f"import socket; c = socket.create_connection(('127.0.0.1', {local})); c.sendall(b'{text}'); "
    return f'{sys.executable} -c "{code}print(c.recv(100).decode())"'
