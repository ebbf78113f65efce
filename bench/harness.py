"""Shared pieces of the benchmarks: a real server in a temporary home, a workspace with a cluster, stats."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API = "?api-version=2018-05-01"
SUB = "00000000-0000-0000-0000-000000000000"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 120.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


class Wire:
    """A lean keep-alive JSON client for the requests benchmarks repeat (creating jobs, polling them). It runs
    on the same two cores as the jobs: httpx costs about 1.3 ms of CPU per request here, http.client 0.4 ms."""

    def __init__(self, endpoint: str, token: str) -> None:
        host, port = endpoint.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The response's JSON; raises on an error status. A connection the server closed while idle is
        opened again (the calls are idempotent)."""
        payload = None if body is None else json.dumps(body)
        try:
            self.connection.request(method, path, payload, self.headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.connection.close()
            self.connection.request(method, path, payload, self.headers)
            response = self.connection.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.connection.close()


@dataclass
class Bench:
    http: httpx.Client
    home: Path
    ws: str
    wire: Wire

    experiment: str = "exp"

    def job_path(self, name: str) -> str:
        return f"{self.ws}/experiments/{self.experiment}/jobs/{name}"

    def use_experiment(self, name: str) -> None:
        """Jobs from now on go to a new experiment (keeps each round's list short)."""
        self.http.put(f"{self.ws}/experiments/{name}" + API).raise_for_status()
        self.experiment = name

    def submit(self, name: str, command: str, cluster: str = "c", node_count: int = 1, **props: Any) -> float:
        """Create a job; returns the time.time() just before the request was sent."""
        body: dict[str, Any] = {
            "properties": {
                "cluster": {"id": f"{self.ws}/clusters/{cluster}"},
                "nodeCount": node_count,
                "stdOutErrPathPrefix": str(self.home / "logs"),
                **props,
            }
        }
        if command:
            body["properties"]["customToolkitSettings"] = {"commandLine": command}
        before = time.time()
        self.wire.call("PUT", self.job_path(name) + API, body)
        return before

    def state(self, name: str) -> str:
        return str(self.wire.call("GET", self.job_path(name) + API)["properties"]["executionState"])


def homes() -> Path:
    """The folder the benchmarks' server homes go in (``$TMPDIR/batchai-bench``), marked for ext4 as the top of a
    hierarchy (``chattr +T``): each home made in it is put in a part of the disk of its own (ext4's Orlov
    allocator spreads such folders' subfolders), away from the files earlier runs and tests made and removed.

    On ext4 without a journal, as this machine's disk, making a file or folder passes over every inode of its part
    of the disk freed in the last 30 s, or 5.5 minutes while their table's block is not written out yet
    (``recently_deleted``): with the homes in ``/tmp`` itself, a run of ``throughput.py`` started within minutes of
    the previous run's clean-up measured 0.65 to 0.68 where it measured 0.71 otherwise (docs/benchmarks.md). Where
    ``chattr`` or the flag is not there (another file system), it is a plain folder."""
    folder = Path(tempfile.gettempdir()) / "batchai-bench"
    folder.mkdir(exist_ok=True)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["chattr", "+T", str(folder)], capture_output=True, timeout=10, check=False)
    return folder


@contextmanager
def server(nodes: int = 1, env: dict[str, str] | None = None, ready_timeout: float = 120.0) -> Iterator[Bench]:
    """A batchai server (its own process, as users run it) with a workspace, an experiment and a cluster.

    ``env`` is added to the server's environment (e.g. ``BATCHAI_RAY_ADDRESS``); ``ready_timeout`` bounds
    the wait for the cluster's nodes to be idle and its allocation steady. The server's home is removed
    afterwards, unless the benchmark failed (its path and server.log are then kept and printed)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=homes()))
    port = free_port()
    env = {**os.environ, "BATCHAI_GRACE_SECONDS": "2", **(env or {})}
    log = open(home / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [PYTHON, "-m", "batchai", "server", "start", "--home", str(home), "--port", str(port)],
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: (home / "credentials.json").exists() and _answers(endpoint), timeout=60, interval=0.05)
        token = json.loads((home / "credentials.json").read_text())["token"]
        http = httpx.Client(base_url=endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        group = f"/subscriptions/{SUB}/resourceGroups/bench"
        http.put(group + "?api-version=2021-04-01", json={"location": "local"}).raise_for_status()
        ws = f"{group}/providers/Microsoft.BatchAI/workspaces/ws"
        http.put(ws + API, json={"location": "local"}).raise_for_status()
        http.put(f"{ws}/experiments/exp" + API).raise_for_status()
        http.put(
            f"{ws}/clusters/c" + API,
            json={"properties": {"vmSize": "local", "scaleSettings": {"manual": {"targetNodeCount": nodes}}}},
        ).raise_for_status()

        def ready() -> bool:
            properties = http.get(f"{ws}/clusters/c" + API).json()["properties"]
            return bool(
                properties["nodeStateCounts"]["idleNodeCount"] == nodes and properties["allocationState"] == "steady"
            )

        wait_for(ready, timeout=ready_timeout, interval=0.05)
        wire = Wire(endpoint, token)
        yield Bench(http, home, ws, wire)
        wire.close()
        http.close()
    except BaseException:
        print(f"benchmark failed; the server's home (with server.log) is kept: {home}", file=sys.stderr)
        raise
    else:
        process.terminate()
        process.wait(30)
        shutil.rmtree(home, ignore_errors=True)
        with contextlib.suppress(OSError):  # the folder of homes too, once no other benchmark's home is in it
            home.parent.rmdir()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        log.close()


def _answers(endpoint: str) -> bool:
    try:
        return httpx.get(endpoint + "/openapi.json", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p90": p90, "n": len(ordered)}


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"
