"""The Ray cluster's head goes away while the server is connected to it. Ray's driver ends the process it runs
in; the server's supervising process starts a new serving process on the same port, so the API keeps
answering (clusters say Ray cannot be reached), and once a head answers at the address again, jobs run there.

The Ray cluster here is started with ``ray start`` (a head that is also the one machine), apart from this
test's process: a driver in the test process would be ended by the head's loss too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    Server,
    assert_nothing_left,
    end_processes,
    free_port,
    leftovers,
    url,
    wait_for,
    with_children,
)
from tests.integration.jobkit import make_bench
from tests.integration.test_distributed import start_server
from tests.raykit import RAY_ENV

RAY = str(Path(sys.executable).parent / "ray")
RECONNECT_SECONDS = "5"  # how long the server's Ray driver waits for a head that went away (Ray's default: 60)


class StandaloneRay:
    """A one-machine Ray cluster (its head offers one unit of ``batchai``) on loopback. Its processes name
    ``root`` (Ray's temporary directory) on their command lines, or carry it in their environment (``MARK``,
    inherited from ``ray start``: its client proxy names neither)."""

    MARK = "BATCHAI_TEST_RAY_ROOT"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.root}",
            "--num-cpus=1",
            '--resources={"batchai": 1}',  # the head is the machine batchai uses too
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        env = {**os.environ, **RAY_ENV, self.MARK: str(self.root)}
        subprocess.run([RAY, "start", *args], env=env, check=True, capture_output=True, timeout=120)

    def processes(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline", "environ"]):
            marked = (process.info["environ"] or {}).get(self.MARK) == str(self.root)
            if marked or str(self.root) in " ".join(process.info["cmdline"] or []):
                found.append(process)
        return found

    def kill(self) -> None:
        """Kill all of it at once, as a lost machine would end it: its processes and their children (a node's
        agents rename themselves, and their environment then no longer reads as it was)."""
        alive = end_processes(with_children(self.processes()), timeout=30)
        assert not alive, f"Ray's processes did not end: {alive}"
        wait_for(lambda: not self.processes(), timeout=30, message="Ray's processes to end")


@pytest.fixture
def standalone_ray() -> Iterator[StandaloneRay]:
    ray = StandaloneRay(Path(f"/tmp/ray-headloss-{os.getpid()}"))  # (short: Ray's socket paths must fit)
    try:
        ray.start()
        yield ray
    finally:
        ray.kill()
        shutil.rmtree(ray.root, ignore_errors=True)


def test_the_server_serves_on_after_the_ray_head_goes_away_and_runs_jobs_once_it_is_back(
    standalone_ray: StandaloneRay, tmp_path: Path
) -> None:
    env = {**RAY_ENV, "BATCHAI_RAY_ADDRESS": standalone_ray.address}
    server: Server = start_server(
        tmp_path / "home", {**env, "RAY_gcs_rpc_server_reconnect_timeout_s": RECONNECT_SECONDS}
    )
    try:
        bench = make_bench(server, "headloss.rg", tmp_path)
        bench.cluster(target=1)
        bench.wait_nodes(idle=1, timeout=90)
        bench.submit("before", customToolkitSettings={"commandLine": "echo before"})
        assert bench.wait_job("before", timeout=60)["executionState"] == "succeeded"
        (serving,) = psutil.Process(server.process.pid).children() if server.process else []

        standalone_ray.kill()
        # Ray's driver ends the serving process; a new one serves on the same port.
        wait_for(lambda: not serving.is_running(), timeout=60, message="Ray's driver to end the serving process")
        assert server.process is not None and server.process.poll() is None
        wait_for(
            lambda: [e["code"] for e in bench.cluster_state().get("errors") or []] == ["ProviderUnavailable"],
            timeout=60,
            message="the cluster to say Ray cannot be reached",
        )
        assert "ended by itself" in (server.home / "test-server.log").read_text()

        standalone_ray.start()
        # The machine the node ran on is gone with the old cluster: the node is replaced by the new one's.
        bench.wait_nodes(idle=1, timeout=120)
        bench.submit("after", customToolkitSettings={"commandLine": "echo after"})
        assert bench.wait_job("after", timeout=90)["executionState"] == "succeeded"
        assert server.http.get(url(f"{bench.ws}/clusters/c")).status_code == 200
    finally:
        server.stop()
        standalone_ray.kill()  # (the server's node agents end with it)
        wait_for(lambda: not leftovers(server.home), timeout=30, message="the server's processes to end")
        assert_nothing_left(server.home)
