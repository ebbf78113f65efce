"""The Ray provider: a cluster's nodes are machines of a Ray cluster.

Binding: the server is given a Ray address and a custom resource name (``--ray-address``,
``--ray-resource``, default ``batchai``). Every alive Ray node that offers one unit of that resource is
a machine batchai may use; each batchai node holds one such machine (clusters never share one).

- Nodes: ``inventory`` is Ray's view (``ray.nodes()``); a machine that leaves it is a lost node. So is a
  node whose agent died while it ran something there (its watchdogs end what it ran, the setup task's
  daemons too): the machine may still be in Ray's view, but the node as batchai prepared it is gone.
- Agents: one detached actor (``node_agent.NodeAgent``) per machine and server home, pinned to its node,
  runs the processes there with the local provider's supervision contract. Detached, it outlives the
  server: a restarted server finds it by name and re-attaches.
- Gangs: a job takes its nodes at once through a placement group, one bundle of the resource on each of
  its machines (``STRICT_SPREAD``, each bundle pinned to its node by the ``ray.io/node-id`` label); the
  group is removed when the job ends.
- Files: node work areas and the job's output directories are paths on the machines, so the server and
  the Ray nodes must share a filesystem (one machine, or NFS at the same paths). Staging through the
  storage API for nodes without one is not implemented.

``ray`` is imported lazily: the package works without it (the ``ray`` extra installs it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchai.providers.base import NodeNotReady, ProcessSpec, ProviderUnavailable
from batchai.providers.node_agent import MARKER, NodeAgent
from batchai.runtime.launch import LaunchError, NodeSlot
from batchai.runtime.launcher import Follower
from batchai.runtime.supervisor import Handle, Outcome

log = logging.getLogger("batchai.ray")
# Two of Ray's notes that mean nothing here: ray.init runs in a thread of its own on purpose (on the main
# thread Ray would take SIGTERM from uvicorn), and urllib3's SOCKS support, which importing Ray loads, is
# never used.
logging.getLogger("ray._private.worker").addFilter(
    lambda record: "SIGTERM handler is not set" not in record.getMessage()
)
warnings.filterwarnings("ignore", message="SOCKS support in urllib3")
NAMESPACE = "batchai"
INVENTORY_SECONDS = 0.5  # how long Ray's node list is reused
CALL_TIMEOUT = 120.0  # the longest a call to an agent may take (an agent's first start included)
CONNECT_SECONDS = 10.0  # how long a call waits for the first connection to Ray
# After an agent could not be reached (Ray: "actor unavailable", e.g. its node is dying but Ray's GCS has not
# said so yet), how long polls of its processes answer "still running" without asking it again.
UNREACHABLE_SECONDS = 2.0


def name_prefix(home: Path) -> str:
    """The prefix of a server's agents and placement groups: several servers can share one Ray cluster."""
    return "batchai-" + hashlib.sha256(str(home).encode()).hexdigest()[:10]


class RayProvider:
    name = "ray"
    node_keys: tuple[str, ...] = ("ray_node_id",)
    launch_threads = 8  # a start may wait up to reserve_timeout for its placement group
    gpus: tuple[int, ...] = ()

    def __init__(
        self,
        ray_address: str,
        resource: str,
        root: Path,
        home: Path,
        *,
        grace_seconds: float = 10.0,
        reserve_timeout: float = 10.0,
        agent_idle_seconds: float = 600.0,
    ) -> None:
        self.ray_address = ray_address
        self.resource = resource
        self.root = root
        self.grace_seconds = grace_seconds
        self.reserve_timeout = reserve_timeout
        self.agent_idle_seconds = agent_idle_seconds
        self.prefix = name_prefix(home)
        self._lock = threading.Lock()
        self._agents: dict[str, Any] = {}
        self._preparing: dict[str, tuple[Any, float]] = {}  # node id -> (agent.prepare ref, when asked)
        self._replaced: set[str] = set()  # nodes whose gone agent a preparation is replacing
        self._connector: threading.Thread | None = None
        self._connect_error: Exception | None = None
        self._inventory: tuple[float, list[dict[str, str]]] = (0.0, [])
        self._unreachable: dict[str, float] = {}  # node id -> until when its agent is not asked (monotonic)

    # -- connection ------------------------------------------------------------------------------------
    def _ray(self) -> Any:
        """The connected ``ray`` module. Connecting runs in its own thread (``ray.init`` retries for a long
        time when the cluster is down), so a call waits a bounded time and then raises ProviderUnavailable."""
        if self.ray_address.split(":")[0] in ("127.0.0.1", "localhost"):
            # A Ray cluster on loopback: unless this is set before ray is imported, Ray swaps 127.0.0.1 for
            # the machine's external address and never reaches it.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray's failure signal handler prints a stack dump on SIGTERM, the server's normal way to stop.
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        import ray

        if ray.is_initialized():
            return ray
        with self._lock:
            if self._connector is None or not self._connector.is_alive():
                self._connect_error = None
                self._connector = threading.Thread(target=self._connect, name="batchai-ray-connect", daemon=True)
                self._connector.start()
                wait = CONNECT_SECONDS
            else:
                wait = 0.5  # an earlier attempt is still trying: do not hold the engine for it again
        self._connector.join(wait)
        if not ray.is_initialized():
            reason = f": {self._connect_error}" if self._connect_error else ""
            raise ProviderUnavailable(f"the Ray cluster at {self.ray_address} cannot be reached{reason}")
        return ray

    def _connect(self) -> None:
        import ray

        try:
            ray.init(address=self.ray_address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # reported by the next _ray() call
            self._connect_error = exc

    def close(self) -> None:
        import sys

        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()

    # -- nodes -----------------------------------------------------------------------------------------
    def inventory(self) -> list[dict[str, str]] | None:
        stamp, machines = self._inventory
        if time.monotonic() - stamp < INVENTORY_SECONDS:
            return machines
        ray = self._ray()
        machines = [
            {
                "ray_node_id": str(n["NodeID"]),
                "address": str(n["NodeManagerAddress"]),
                "gpus": str(int(float((n.get("Resources") or {}).get("GPU", 0)))),
            }
            for n in ray.nodes()
            if n.get("Alive") and float((n.get("Resources") or {}).get(self.resource, 0)) >= 1
        ]
        self._inventory = (time.monotonic(), machines)
        return machines

    def _alive(self, node_id: str, fresh: bool = False) -> bool:
        """Whether the machine is in Ray's view (``fresh``: ask Ray again rather than use the last list)."""
        if fresh:
            self._inventory = (0.0, [])
        return any(m["ray_node_id"] == node_id for m in self.inventory() or [])

    def _agent(self, node_id: str) -> Any:
        """The node's agent, started if need be (it keeps running after the server stops)."""
        agent = self._agents.get(node_id)
        if agent is not None:
            return agent
        ray = self._ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        agent = (
            ray.remote(NodeAgent)
            .options(
                name=f"{self.prefix}-agent-{node_id[:16]}",
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_concurrency=1000,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            )
            .remote(self.grace_seconds, self.agent_idle_seconds)
        )
        self._agents[node_id] = agent
        return agent

    def _call(self, node_id: str, method: str, *args: Any, timeout: float | None = CALL_TIMEOUT) -> Any:
        """``method`` of the node's agent; an agent that is gone (it left when idle, or died) is replaced
        once while its machine is in Ray's view. One that Ray cannot reach for now (``ActorUnavailableError``:
        its node may be dying, unknown yet to Ray's GCS) is not: that is raised."""
        ray = self._ray()
        for attempt in (1, 2):
            try:
                return ray.get(getattr(self._agent(node_id), method).remote(*args), timeout=timeout)
            except ray.exceptions.ActorUnavailableError:
                raise
            except ray.exceptions.RayActorError:
                self._agents.pop(node_id, None)
                if attempt == 2 or not self._alive(node_id, fresh=True):
                    raise
        raise AssertionError("unreachable")

    def node_dir(self, cluster_id: int, node_name: str) -> Path:
        return self.root / str(cluster_id) / node_name

    def shared_dir(self, cluster_id: int) -> Path:
        return self.root / str(cluster_id) / "shared"

    def gpus_for(self, node: dict[str, Any], node_index: int, node_count: int) -> tuple[int, ...]:
        """A batchai node holds a whole machine: all the GPUs Ray counts on it (numbered from 0, as the machine
        sees them when its raylet was not itself limited by ``CUDA_VISIBLE_DEVICES``)."""
        return tuple(range(int(node.get("gpus") or 0)))

    def address(self, node: dict[str, Any]) -> str:
        return str(node.get("address") or "127.0.0.1")

    def free_ports(self, node: NodeSlot, count: int) -> list[int]:
        return list(self._call(dict(node.info)["ray_node_id"], "free_ports", count))

    def prepare_node(
        self, cluster_id: int, node_name: str, links: list[tuple[Path, Path]], node: dict[str, str]
    ) -> Path:
        """Asks the node's agent (started on first use) to make the work area; raises NodeNotReady while the
        agent is still starting, so that the engine never waits on it with the database locked."""
        ray = self._ray()
        node_id = node["ray_node_id"]
        node_dir = self.node_dir(cluster_id, node_name)
        pending = self._preparing.get(node_id)
        if pending is None:
            ref = self._agent(node_id).prepare.remote(node_dir, self.shared_dir(cluster_id), links)
            pending = self._preparing[node_id] = (ref, time.monotonic())
        ref, since = pending
        ready, _ = ray.wait([ref], timeout=0.2)
        if not ready:
            if time.monotonic() - since < CALL_TIMEOUT:
                raise NodeNotReady(node_id)
            self._preparing.pop(node_id, None)
            raise OSError(f"the batchai agent on Ray node {node_id[:12]} did not start in {CALL_TIMEOUT:g}s")
        self._preparing.pop(node_id, None)
        try:
            written = ray.get(ref)
        except Exception as exc:  # the agent could not start there: the node is unusable
            self._agents.pop(node_id, None)
            if isinstance(exc, ray.exceptions.RayActorError) and node_id not in self._replaced:
                self._replaced.add(node_id)  # an agent that had left when idle: once more with a new one
                raise NodeNotReady(node_id) from exc
            raise OSError(f"the batchai agent on Ray node {node_id[:12]} did not start: {exc}") from exc
        self._replaced.discard(node_id)
        try:
            seen = (node_dir / MARKER).read_text()
        except OSError:
            seen = ""
        if seen != written:
            raise OSError(
                f"Ray node {node_id[:12]} ({node.get('address', '?')}) does not share the server's filesystem: "
                f"what its agent wrote in {node_dir} is not there on the server. Nodes on Ray need the server's "
                "home at the same path (one machine, or a shared filesystem such as NFS)."
            )
        return node_dir

    def release_node(self, cluster_id: int, node_name: str, node: dict[str, str]) -> None:
        node_dir = self.node_dir(cluster_id, node_name)
        if node.get("ray_node_id") and self._alive(node["ray_node_id"]):
            try:  # its agent stops what its setup task left running there
                self._call(node["ray_node_id"], "release", node_dir)
            except Exception as exc:  # (the machine went meanwhile: nothing of it runs)
                log.info("releasing %s on its Ray node: %s", node_name, exc)
        shutil.rmtree(node_dir, ignore_errors=True)  # a shared filesystem

    def sweep(self, clusters: set[int], nodes: set[tuple[int, str]]) -> None:
        """Not done on Ray: the agents' watchdogs end what their nodes ran once no server holds them."""

    # -- processes -------------------------------------------------------------------------------------
    def start(self, spec: ProcessSpec) -> Handle:
        node_id = spec.node["ray_node_id"]
        args = (spec.script, spec.body, spec.env, spec.cwd, spec.stdout, spec.stderr, spec.exit_file, spec.keep)
        handle: Handle = self._call(node_id, "start", *args)
        return Handle(handle.pid, handle.start, handle.exit_file, node_id, spec.keep)

    def follows(self, handle: Handle) -> bool:
        return False  # a job starts once its nodes are free (and Ray has placed them)

    def follow(self, after: Handle, spec: ProcessSpec) -> Follower | None:
        return None

    def cancel(self, follower: Follower) -> bool:
        return True  # (none is ever made)

    def _lost(self, handle: Handle) -> Outcome:
        """The agent that ran the process is gone, and the process with it (its watchdog ends its session):
        the node is lost, whether its machine left Ray's view or (``agent_lost``: the machine is still there)
        only the agent died."""
        return Outcome(None, node_lost=True, agent_lost=self._alive(handle.where, fresh=True))

    @staticmethod
    def _answer(outcome: Outcome | None) -> Outcome | None:
        """An agent's answer about a process. An agent knows the exit code of every process it started (from
        its exit file, else its wait status), so a process that ended without one was started by an earlier
        agent of the node that is gone, and had died (an agent leaves by itself only with nothing running):
        the node was lost with it."""
        if outcome is not None and outcome.exit_code is None and not outcome.node_lost:
            return Outcome(None, node_lost=True, ended_at=outcome.ended_at, agent_lost=True)
        return outcome

    def _unavailable(self, node_id: str) -> None:
        self._unreachable[node_id] = time.monotonic() + UNREACHABLE_SECONDS
        log.info("the batchai agent on Ray node %s cannot be reached for now", node_id[:12])

    def _reachable(self, node_id: str) -> bool:
        """False for a while after the node's agent could not be reached (see ``UNREACHABLE_SECONDS``)."""
        until = self._unreachable.get(node_id)
        if until is None:
            return True
        if time.monotonic() < until:
            return False
        self._unreachable.pop(node_id, None)
        return True

    def on_exit(self, handle: Handle, callback: Callable[[], None]) -> bool:
        return False  # the engine waits through the agent in a thread

    def poll(self, handle: Handle) -> Outcome | None:
        """None while the process runs, or while its agent cannot be reached but its machine is still in
        Ray's view (until Ray says whether the node or only the agent is gone, or the agent answers again)."""
        ray = self._ray()
        if not self._alive(handle.where):
            return self._lost(handle)
        if not self._reachable(handle.where):
            return None
        try:
            return self._answer(self._call(handle.where, "poll", handle, timeout=30))
        except ray.exceptions.ActorUnavailableError:
            self._unavailable(handle.where)
            return None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
            return self._lost(handle)
        except ray.exceptions.GetTimeoutError:
            return None

    def wait(self, handle: Handle, timeout: float | None = None) -> Outcome | None:
        ray = self._ray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 5.0 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic()))
            if not self._alive(handle.where):
                return self._lost(handle)
            outcome: Outcome | None = None
            try:
                if self._reachable(handle.where):
                    outcome = self._answer(self._call(handle.where, "wait", handle, step, timeout=step + 30))
                else:
                    time.sleep(min(step, 0.5))
            except ray.exceptions.ActorUnavailableError:
                self._unavailable(handle.where)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
                return self._lost(handle)
            except ray.exceptions.GetTimeoutError:
                outcome = None
            if outcome is not None or (deadline is not None and time.monotonic() >= deadline):
                return outcome

    def stop(self, handle: Handle, grace: float) -> Outcome:
        ray = self._ray()
        if not self._alive(handle.where):
            return self._lost(handle)
        try:
            outcome: Outcome = self._call(handle.where, "stop", handle, grace, timeout=grace + 60)
            return outcome
        except ray.exceptions.ActorUnavailableError:
            self._unavailable(handle.where)
            return Outcome(None)  # nothing known: the polls say once Ray knows
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
            return self._lost(handle)

    # -- gangs -----------------------------------------------------------------------------------------
    def _group_name(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def reserve(self, key: str, nodes: list[dict[str, str]]) -> None:
        ray = self._ray()
        from ray.util.placement_group import placement_group, remove_placement_group

        self.unreserve(key)  # a group left by an earlier start of the same attempt
        group = placement_group(
            [{self.resource: 1.0} for _ in nodes],
            strategy="STRICT_SPREAD",
            name=self._group_name(key),
            lifetime="detached",
            bundle_label_selector=[{"ray.io/node-id": n["ray_node_id"]} for n in nodes],
        )
        try:
            ray.get(group.ready(), timeout=self.reserve_timeout)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(group)
            raise LaunchError(
                "NodesNotAvailable",
                f"Ray did not give the job its {len(nodes)} node(s) within {self.reserve_timeout:g}s "
                f"(placement group of '{self.resource}' bundles).",
            ) from None

    def unreserve(self, key: str) -> None:
        self._ray()
        from ray.util.placement_group import get_placement_group, remove_placement_group

        try:
            group = get_placement_group(self._group_name(key))
        except ValueError:
            return
        remove_placement_group(group)
