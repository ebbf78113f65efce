"""A real multi-node Ray cluster on this machine (ray.cluster_utils), on loopback only.

The head offers no ``batchai`` resource; each worker node offers one unit of it (plus one CPU and two
logical GPUs), so each is one machine batchai may use. Node death is noticed within a few seconds (short health checks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import end_processes, with_children

RAY_ENV = {
    # Keep every Ray node on 127.0.0.1 (otherwise Ray picks the machine's external address).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Notice a killed node within seconds, not the default half minute.
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "4",
    "RAY_USAGE_STATS_ENABLED": "0",
}
os.environ.update(RAY_ENV)  # before anything imports ray


class RayCluster:
    """A head plus ``size`` worker nodes; the test process is connected as a driver.

    With ``dashboard_port`` the head also serves Ray's dashboard (and its job submission API) on
    ``http://127.0.0.1:<dashboard_port>``. ``system_config`` overrides Ray's settings for the whole cluster
    (e.g. ``{"health_check_failure_threshold": 30}``: Ray's GCS takes longer to find a node dead)."""

    def __init__(
        self, size: int, dashboard_port: int | None = None, system_config: dict[str, Any] | None = None
    ) -> None:
        os.environ.update(RAY_ENV)
        # The processes the cluster starts (their own children are found through them at shutdown).
        self._processes: dict[int, psutil.Process] = {}
        before = _descendants()
        import ray
        from ray.cluster_utils import Cluster

        self.ray: Any = ray
        head: dict[str, Any] = {"num_cpus": 0}
        if system_config:
            head["_system_config"] = system_config
        if dashboard_port is not None:
            head.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=dashboard_port)
        self.dashboard_url = f"http://127.0.0.1:{dashboard_port}" if dashboard_port is not None else None
        self.cluster: Any = Cluster(initialize_head=True, head_node_args=head)
        self.workers: list[Any] = []
        for _ in range(size):
            self.add_node()
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, namespace="batchai-tests", log_to_driver=False)
        self._started_since(before)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self) -> Any:
        # Two GPUs as Ray counts them (logical: there are none here), to see them reach the jobs.
        before = _descendants()
        node = self.cluster.add_node(num_cpus=1, num_gpus=2, resources={"batchai": 1})
        self.workers.append(node)
        self._started_since(before)
        return node

    def _started_since(self, before: dict[int, psutil.Process]) -> None:
        self._processes.update((pid, p) for pid, p in _descendants().items() if pid not in before)

    def remove_node(self, node_id: str) -> None:
        """Kill a worker node outright (its raylet and every worker on it), as a machine failure would."""
        node = next(n for n in self.workers if n.node_id == node_id)
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def kill_agents(self, prefix: str) -> None:
        """Kill the detached batchai agents a server left (they outlive their server on purpose)."""
        from ray.util import list_named_actors

        for entry in list_named_actors(all_namespaces=True):
            if entry["name"].startswith(prefix):
                try:
                    self.ray.kill(self.ray.get_actor(entry["name"], namespace=entry["namespace"]))
                except ValueError:
                    continue

    def shutdown(self) -> None:
        """Stop the cluster and wait until every process it started is gone (Ray leaves some, such as its client
        proxy and its nodes' agents, to notice by themselves, which takes them a minute or more): killed after
        a short while, so that no test leaves a process behind."""
        started = with_children(self._processes.values())
        self.ray.shutdown()
        self.cluster.shutdown()
        end_processes(started, patience=5)


def _descendants() -> dict[int, psutil.Process]:
    return {p.pid: p for p in psutil.Process().children(recursive=True)}


# A Ray worker node (as ray.cluster_utils starts them) that offers one unit of a resource until SIGTERM.
_NODE = """
import signal, sys, threading
from ray._private.node import Node
from ray._private.parameter import RayParams
params = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1, resources={sys.argv[2]: 1})
node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
node.kill_all_processes(check_alive=False, allow_graceful=False)
"""


@contextmanager
def machine_apart(cluster: RayCluster, hidden: Path, resource: str) -> Iterator[None]:
    """A Ray node offering ``resource`` in its own mount namespace, where ``hidden`` is an empty tmpfs: a
    machine that does not share that directory with this one. Needs root and unshare(1)."""
    hidden.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs tmpfs '{hidden}' && exec '{sys.executable}' -c \"$0\" '{cluster.address}' '{resource}'"
    node = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, _NODE],
        env={**os.environ, **RAY_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(60)
