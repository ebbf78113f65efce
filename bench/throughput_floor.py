"""What benchmark (b) can reach on this machine with a minimal server: not batchai, but the least a server with the
same shape does per job. It takes the same requests as batchai's API (a token checked, the job's JSON parsed and
stored in SQLite, a job polled by GET), runs each job as batchai does (a new session, stdout and stderr in
files under a folder of its own, its exit code recorded in the database), and starts a node's next job the moment
its job ends, from one thread, with no launcher process, no ORM, no validation, no execution log.

    python bench/throughput_floor.py [--rounds 10] [--jobs 200] [--batchai]

Each round runs the same client as ``throughput.py`` against this server, beside ``xargs -P2`` as there; with
``--batchai``, against a batchai server too, in the same rounds, so that the machine's drift cancels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import selectors
import shlex
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import Wire, server, wait_for
from throughput import NODES, batchai_seconds, xargs_seconds

API = "?api-version=2018-05-01"


class Floor:
    """The server: an ASGI app over one SQLite connection, and an engine thread that starts and reaps the jobs."""

    def __init__(self, home: Path, token: str) -> None:
        self.home, self.token = home, token
        self.db = sqlite3.connect(home / "floor.db", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT UNIQUE, spec TEXT, state TEXT, "
            "exit_code INTEGER, started REAL, ended REAL)"
        )
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        threading.Thread(target=self.engine, daemon=True).start()

    def sql(self, statement: str, *params: Any) -> list[Any]:
        with self.lock:
            return self.db.execute(statement, params).fetchall()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        sent = dict(scope["headers"])
        status, answer = 401, {"error": {"code": "Unauthorized"}}
        if sent.get(b"authorization") == f"Bearer {self.token}".encode():
            status, answer = self.handle(scope["method"], scope["path"], body)
        data = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = path.split("/")
        if "jobs" not in parts:  # (an experiment: nothing to keep)
            return 200, {"name": parts[-1]}
        if parts[-1] == "jobs":
            rows = self.sql("SELECT name, state FROM jobs")
            return 200, {"value": [{"name": n, "properties": {"executionState": s}} for n, s in rows]}
        name = parts[-1]
        if method == "PUT":
            spec = json.loads(body)["properties"]
            self.sql("INSERT INTO jobs (name, spec, state) VALUES (?, ?, 'queued')", name, json.dumps(spec))
            os.write(self.wake_w, b"x")
        rows = self.sql("SELECT state, exit_code FROM jobs WHERE name = ?", name)
        if not rows:
            return 404, {"error": {"code": "NotFound"}}
        return 200, {"name": name, "properties": {"executionState": rows[0][0], "exitCode": rows[0][1]}}

    def engine(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.wake_r, selectors.EVENT_READ, None)
        free = list(range(NODES))
        while True:
            for key, _ in selector.select():
                if key.data is None:
                    os.read(self.wake_r, 4096)
                    continue
                process, job_id, node, pidfd = key.data
                code = process.wait()
                selector.unregister(pidfd)
                os.close(pidfd)
                state = "succeeded" if code == 0 else "failed"
                ended = time.time()
                self.sql("UPDATE jobs SET state = ?, exit_code = ?, ended = ? WHERE id = ?", state, code, ended, job_id)
                free.append(node)
            while free:
                rows = self.sql("SELECT id, name, spec FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1")
                if not rows:
                    break
                node = free.pop()
                job_id, name, spec = rows[0]
                self.sql("UPDATE jobs SET state = 'running', started = ? WHERE id = ?", time.time(), job_id)
                process = self.start(json.loads(spec), name, node)
                pidfd = os.pidfd_open(process.pid)
                selector.register(pidfd, selectors.EVENT_READ, (process, job_id, node, pidfd))

    def start(self, spec: dict[str, Any], name: str, node: int) -> subprocess.Popen[bytes]:
        work = self.home / "nodes" / str(node) / name / "wd"
        work.mkdir(parents=True)
        logs = Path(spec["stdOutErrPathPrefix"]) / name / str(uuid.uuid4()) / "stdouterr"
        logs.mkdir(parents=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "AZ_BATCHAI_JOB_TEMP": str(work)}
        with open(logs / "stdout.txt", "ab") as out, open(logs / "stderr.txt", "ab") as err:
            return subprocess.Popen(
                shlex.split(spec["customToolkitSettings"]["commandLine"]),
                cwd=work,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )


class FloorBench:
    """What ``throughput.batchai_seconds`` uses of ``harness.Bench``, for the floor server."""

    def __init__(self, endpoint: str, token: str, home: Path) -> None:
        self.wire, self.home, self.ws, self.experiment = Wire(endpoint, token), home, "/floor", "exp"

    def use_experiment(self, name: str) -> None:
        self.experiment = name

    def job_path(self, name: str) -> str:
        return f"{self.ws}/experiments/{self.experiment}/jobs/{name}"

    def submit(self, name: str, command: str) -> None:
        settings = {"commandLine": command}
        body = {"properties": {"stdOutErrPathPrefix": str(self.home / "logs"), "customToolkitSettings": settings}}
        self.wire.call("PUT", self.job_path(name) + API, body)

    def state(self, name: str) -> str:
        return str(self.wire.call("GET", self.job_path(name) + API)["properties"]["executionState"])


def serve(home: Path, port: int, token: str) -> None:
    import uvicorn

    uvicorn.run(Floor(home, token), host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def floor_server() -> Iterator[FloorBench]:
    with tempfile.TemporaryDirectory(prefix="batchai-floor-") as tmp:
        home, token = Path(tmp), secrets.token_hex(16)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(home), token])
        try:
            bench = FloorBench(f"http://127.0.0.1:{port}", token, home)

            def up() -> bool:
                with contextlib.suppress(OSError, RuntimeError):
                    bench.wire.call("GET", "/floor/experiments/warm")
                    return True
                bench.wire.close()
                return False

            wait_for(up, timeout=30, interval=0.1)
            yield bench
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--batchai", action="store_true", help="measure a batchai server in the same rounds")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "HOME", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[1]), int(args.serve[0]), args.serve[2])
        return
    ratios: dict[str, list[float]] = {"floor": [], "batchai": []}
    with contextlib.ExitStack() as stack:
        benches: dict[str, Any] = {"floor": stack.enter_context(floor_server())}
        if args.batchai:
            benches["batchai"] = stack.enter_context(server(nodes=NODES))
        for r in range(args.rounds):
            base = xargs_seconds(args.jobs)
            line = f"round {r + 1}: xargs -P2 {args.jobs / base:.1f} jobs/s"
            for name, bench in benches.items():
                ours = batchai_seconds(bench, args.jobs, f"r{r}-")
                ratios[name].append(base / ours)
                line += f", {name} {args.jobs / ours:.1f} jobs/s (ratio {base / ours:.2f})"
            print(line, flush=True)
    for name, values in ratios.items():
        if values:
            print(f"{name}: ratio to xargs -P2, median {statistics.median(values):.2f} over {len(values)} rounds")


if __name__ == "__main__":
    main()
