"""Clusters' nodes: brought toward each cluster's target (a fixed size, or auto-scale between its bounds),
prepared (mounts, then the setup task), removed as ``nodeDeallocationOption`` says, and lost when their
machine leaves the provider. The engine's loop calls ``Nodes.sync``; its passes over jobs ask ``lose``,
``lost_reason`` and ``keys``."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from batchai.providers.base import NodeNotReady, NodeProvider, ProcessSpec, ProviderUnavailable
from batchai.runtime import launch, supervisor
from batchai.runtime.supervisor import Handle
from batchai.scheduler.settings import EngineSettings
from batchai.services import clusters as cluster_service
from batchai.services.context import Ctx
from batchai.services.mounts import file_server_row
from batchai.states import JobState
from batchai.storage.base import StorageBackend, Volume
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Node

log = logging.getLogger("batchai.nodes")
# The cluster error that says why a cluster stays resizing: its provider has too few machines for its target.
SHORTAGE = "InsufficientRayNodes"
MAX_RELEASES = 16  # nodes of a deleted cluster released at once


class NodeState:
    PREPARING = "preparing"
    IDLE = "idle"
    RUNNING = "running"
    LEAVING = "leaving"
    UNUSABLE = "unusable"


@dataclass(eq=False)
class Nodes:
    """Keeps every cluster's nodes as the API asked. ``resolve``: a storage volume's directory on this host;
    ``watch``: wake the engine when a setup task's process ends."""

    db: Database
    storage: StorageBackend
    provider: NodeProvider
    settings: EngineSettings
    clock: Callable[[], datetime]
    resolve: Callable[[Volume], Path]
    watch: Callable[[Handle], None]
    settled: bool = field(default=False, init=False)  # at the last look: nothing to do until something changes
    _became_idle: bool = field(default=False, init=False)

    def _ctx(self, session: Session) -> Ctx:
        return Ctx(session=session, storage=self.storage, clock=self.clock)

    def _desired_nodes(self, session: Session, cluster: Cluster) -> int:
        scale = cluster.spec["scaleSettings"]
        if "manual" in scale:
            return int(scale["manual"]["targetNodeCount"])
        auto = scale["autoScale"]
        waiting = session.scalar(
            select(func.coalesce(func.sum(Job.node_count), 0)).filter(
                Job.cluster_id == cluster.id, Job.execution_state == JobState.QUEUED
            )
        )
        busy = sum(1 for n in cluster.nodes if n.job_id is not None)
        need = busy + int(waiting or 0)
        # A new cluster starts with its initialNodeCount nodes (set up, ready for jobs), kept for a while.
        if (self.clock() - cluster.created_at).total_seconds() < self.settings.initial_nodes_seconds:
            need = max(need, int(auto.get("initialNodeCount") or 0))
        return max(int(auto["minimumNodeCount"]), min(int(auto["maximumNodeCount"]), need))

    def sync(self) -> bool:
        """Bring every cluster's nodes toward its target; True if some node became idle."""
        self._became_idle = False
        try:
            machines = self.provider.inventory()
        except ProviderUnavailable as exc:
            self.provider_down(str(exc))
            return False
        all_settled = machines is None  # nodes on this host: nothing changes unless told
        with self.db.session() as session:
            for cluster in session.scalars(select(Cluster).filter(Cluster.provisioning_state != "deleting")).all():
                self._sync_cluster(session, cluster, machines)
                all_settled = all_settled and settled_cluster(cluster)
        self.settled = all_settled
        return self._became_idle

    def _sync_cluster(self, session: Session, cluster: Cluster, machines: list[dict[str, str]] | None) -> None:
        now = self.clock()
        target = self._desired_nodes(session, cluster)
        if machines is not None:
            self._lose_machines(session, cluster, machines)
        nodes = [n for n in cluster.nodes if n.state != NodeState.LEAVING]
        if len(nodes) < target:
            free = self._free_machines(session, machines)
            used = {n.index for n in cluster.nodes}
            for i in range(target - len(nodes) if free is None else min(target - len(nodes), len(free))):
                index = next(i for i in range(len(used) + 1) if i not in used)
                used.add(index)
                node = Node(
                    name=f"node-{index}",
                    index=index,
                    state=NodeState.PREPARING,
                    state_time=now,
                    info=dict(free[i]) if free is not None else {},
                    errors=[],
                )
                cluster.nodes.append(node)
            session.flush()
        elif len(nodes) > target:
            self._shrink(session, cluster, nodes, len(nodes) - target)
        for node in list(cluster.nodes):
            if node.state == NodeState.PREPARING:
                self._prepare(session, cluster, node)
            elif node.state == NodeState.LEAVING and node.job_id is None:
                self._remove_node(session, cluster, node)
        held = len([n for n in cluster.nodes if n.state != NodeState.LEAVING])
        self._report_shortage(cluster, target, held, machines)
        steady = held == target and not any(n.state in (NodeState.PREPARING, NodeState.LEAVING) for n in cluster.nodes)
        state = "steady" if steady else "resizing"
        if cluster.allocation_state != state:
            cluster.allocation_state = state
            cluster.allocation_state_time = now

    def _report_shortage(self, cluster: Cluster, target: int, held: int, machines: list[dict[str, str]] | None) -> None:
        """Say in the cluster's errors why it stays resizing while the provider has too few machines for its
        target (as Batch AI reported a resize it could not finish); the error goes once the nodes come (or the
        target comes down). It is kept up to date (the counts change) and never repeated."""
        errors = list(cluster.errors or [])
        others = [e for e in errors if e.get("code") != SHORTAGE]
        if machines is None or held >= target:
            if len(others) != len(errors):
                cluster.errors = others
                log.info("%s: the nodes it waited for came (%d of %d)", cluster.name, held, target)
            return
        resource = getattr(self.provider, "resource", "")
        offering = f" offering the '{resource}' resource" if resource else ""
        error = {
            "code": SHORTAGE,
            "message": (
                f"The cluster needs {target} node(s) and has {held}: the Ray cluster has {len(machines)} "
                f"machine(s){offering} and none is free ({held} in this cluster, {len(machines) - held} held by "
                "other clusters or by nodes that are leaving). It stays resizing until more machines join the Ray "
                "cluster or others are freed."
            ),
            "details": [
                {"name": "targetNodeCount", "value": str(target)},
                {"name": "currentNodeCount", "value": str(held)},
                {"name": "rayMachines", "value": str(len(machines))},
                {"name": "rayMachinesHeldElsewhere", "value": str(len(machines) - held)},
            ],
        }
        if error in errors:
            return
        if len(others) == len(errors):
            log.warning("%s: %s", cluster.name, error["message"])
        cluster.errors = [*others, error][-10:]

    def provider_down(self, message: str) -> None:
        """Say on every cluster that its nodes cannot be reached (once per outage), and in the log."""
        error = {"code": "ProviderUnavailable", "message": message, "details": []}
        with self.db.session() as session:
            for cluster in session.scalars(select(Cluster).filter(Cluster.provisioning_state != "deleting")):
                if not cluster.errors or cluster.errors[-1] != error:
                    cluster.errors = [*(cluster.errors or []), error][-10:]
                    log.warning("%s: %s", cluster.name, message)

    @staticmethod
    def _free_machines(session: Session, machines: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        """Machines no node holds yet (None: the provider makes nodes on demand)."""
        if machines is None:
            return None
        held = {str(info.get("ray_node_id")) for info in session.scalars(select(Node.info)) if info}
        return [m for m in machines if m["ray_node_id"] not in held]

    def _lose_machines(self, session: Session, cluster: Cluster, machines: list[dict[str, str]]) -> None:
        """Nodes whose machine left the provider's inventory are lost: their jobs stop (failed with an
        error that names the node, or requeued as the cluster's nodeDeallocationOption says)."""
        alive = {m["ray_node_id"] for m in machines}
        for node in cluster.nodes:
            key = node.info.get("ray_node_id")
            if key is not None and key not in alive:
                self.lose(session, cluster, node)

    def lose(self, session: Session, cluster: Cluster, node: Node, agent_died: bool = False) -> None:
        """A node's machine is gone, or (``agent_died``) the agent that ran the node's processes on it died and
        ended them (the setup task's daemons too): it leaves the cluster (never to be scheduled again; a new
        node, prepared afresh, may take the machine) and its job stops."""
        if node.state == NodeState.LEAVING:
            return
        name = describe_node(node.name, node.info)
        message = f"Node {name} left the cluster."
        if agent_died:
            message = (
                f"The batchai agent on node {name} died, ending the node's processes: the node left the cluster "
                "(a new node, set up afresh, takes its place)."
            )
        error = {"code": "NodeLost", "message": message, "details": []}
        node.errors = [error]
        cluster.errors = [*(cluster.errors or []), error][-10:]
        self._node_state(node, NodeState.LEAVING)
        log.warning("%s: node %s was lost%s", cluster.name, name, " (its agent died)" if agent_died else "")
        job = session.get(Job, node.job_id) if node.job_id is not None else None
        if job is not None and job.stop_reason is None:
            job.stop_reason = self.lost_reason(cluster, job)
            job.notes = {**job.notes, "lost_node": name}

    def lost_reason(self, cluster: Cluster, job: Job) -> str:
        option = (cluster.spec["scaleSettings"].get("manual") or {}).get("nodeDeallocationOption", "requeue")
        return "requeue" if option == "requeue" and job.attempts < self.settings.max_attempts else "node_lost"

    def _shrink(self, session: Session, cluster: Cluster, nodes: list[Node], count: int) -> None:
        """Remove ``count`` nodes: unusable, idle and preparing ones first, then busy ones as
        ``nodeDeallocationOption`` says (requeue or terminate their jobs, or wait for them)."""
        rank = {NodeState.UNUSABLE: 0, NodeState.IDLE: 1, NodeState.PREPARING: 2, NodeState.RUNNING: 3}
        victims = sorted(nodes, key=lambda n: (rank.get(n.state, 4), -n.index))[:count]
        option = (cluster.spec["scaleSettings"].get("manual") or {}).get("nodeDeallocationOption", "requeue")
        for node in victims:
            if node.job_id is None:
                self._remove_node(session, cluster, node)
                continue
            node.state = NodeState.LEAVING
            node.state_time = self.clock()
            job = session.get(Job, node.job_id)
            if job is not None and option in ("requeue", "terminate") and job.stop_reason is None:
                job.stop_reason = "requeue" if option == "requeue" else "deallocated"

    def _remove_node(self, session: Session, cluster: Cluster, node: Node) -> None:
        handle = supervisor.from_info(node.info.get("setup") or {})
        if handle is not None:
            self.provider.stop(handle, self.settings.grace_seconds)
        self.provider.release_node(cluster.id, node.name, self.keys(node))
        cluster.nodes.remove(node)
        session.delete(node)

    def setup_output_dir(self, cluster: Cluster, node: Node, prefix_env: dict[str, str]) -> Path:
        setup = cluster.spec["nodeSetup"]["setupTask"]
        prefix = launch.expand(setup["stdOutErrPathPrefix"], prefix_env)
        return Path(prefix) / cluster_service.setup_output_suffix(cluster) / node.name

    def _prepare(self, session: Session, cluster: Cluster, node: Node) -> None:
        """Provision a node and run its setup task; idle when done, unusable if it fails."""
        setup = (cluster.spec.get("nodeSetup") or {}).get("setupTask")
        info = dict(node.info)
        handle = supervisor.from_info(info.get("setup") or {})
        if handle is None:
            node_dir = self.provider.node_dir(cluster.id, node.name)
            try:
                servers = file_server_path(self._ctx(session), self.settings.home)
                links, unmanaged = launch.cluster_mounts(cluster.spec, node_dir / "mounts", self.resolve, servers)
                self.provider.prepare_node(cluster.id, node.name, links, self.keys(node))
            except NodeNotReady:
                return  # still coming up: the next pass looks again
            except (launch.LaunchError, OSError, Exception) as exc:
                self._node_unusable(cluster, node, "NodePreparationFailed", f"Preparing {node.name} failed: {exc}")
                return
            if not setup and not unmanaged:
                self._node_state(node, NodeState.IDLE)
                return
            # Mount commands run first in the node's preparation process (supervised, like the setup task):
            # a slow or daemonizing one holds up neither the engine nor the database.
            env = launch.node_environment(dict(self.settings.base_env), node_dir, node.name)
            mounts = "".join(launch.mount_script(command, path) for command, path in unmanaged)
            if setup:
                for variable in setup.get("environmentVariables") or []:
                    env[variable["name"]] = launch.expand(variable["value"], env)
                for secret in setup.get("secrets") or []:
                    if secret.get("value") is not None:
                        env[secret["name"]] = secret["value"]
            out_dir = self.setup_output_dir(cluster, node, env) if setup else node_dir / "setup"
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                spec = ProcessSpec(
                    node_dir / "setup" / "setup.sh",
                    f"cd {node_dir / 'setup'}\n{mounts}{setup['commandLine'] if setup else ''}",
                    env=env,
                    cwd=node_dir / "setup",
                    stdout=out_dir / "stdout.txt",
                    stderr=out_dir / "stderr.txt",
                    exit_file=node_dir / "setup" / "exit_code",
                    node=self.keys(node),
                    keep=True,  # its daemons live until the node is released, as on Batch AI
                )
                handle = self.provider.start(spec)
            except OSError as exc:
                self._node_unusable(cluster, node, "SetupTaskFailed", f"The setup task could not start: {exc}")
                return
            info["setup"] = {**supervisor.as_info(handle), "stderr": str(out_dir / "stderr.txt")}
            node.info = info
            self.watch(handle)
            return
        outcome = self.provider.poll(handle)
        if outcome is None:
            return
        setup_info = info.pop("setup", None) or {}
        node.info = info
        if outcome.node_lost:  # (its agent died while the setup task ran: a new node takes its place)
            self.lose(session, cluster, node, agent_died=outcome.agent_lost)
            return
        if outcome.exit_code == 0:
            self._node_state(node, NodeState.IDLE)
            return
        last = supervisor.tail(Path(setup_info["stderr"])) if setup_info.get("stderr") else []
        self._node_unusable(
            cluster,
            node,
            "SetupTaskFailed",
            f"The setup task on {node.name} failed with exit code {outcome.exit_code}.",
            last,
        )

    def keys(self, node: Any) -> dict[str, str]:
        """What identifies the node (a Node, or a row with its info) to the provider (e.g. its Ray node id)."""
        return self.keys_of(node.info)

    def keys_of(self, info: dict[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in info.items() if k in self.provider.node_keys}

    def _node_state(self, node: Node, state: str) -> None:
        if state == NodeState.IDLE and node.state != NodeState.IDLE:
            self._became_idle = True
        node.state = state
        node.state_time = self.clock()

    def _node_unusable(
        self, cluster: Cluster, node: Node, code: str, message: str, last_lines: list[str] | None = None
    ) -> None:
        self._node_state(node, NodeState.UNUSABLE)
        error = {
            "code": code,
            "message": message,
            "details": [{"name": "node", "value": node.name}]
            + ([{"name": "stderr", "value": "\n".join(last_lines)}] if last_lines else []),
        }
        node.errors = [error]
        cluster.errors = [*(cluster.errors or []), error][-10:]
        log.warning("%s: %s", cluster.name, message)

    def release_cluster(self, cluster_id: int, nodes: list[tuple[str, dict[str, Any]]]) -> None:
        """After a cluster is deleted: stop its setup tasks and remove its nodes' work areas. The nodes are
        released together, so that setup tasks ignoring SIGTERM hold the delete one grace period, not one each."""

        def release(node: tuple[str, dict[str, Any]]) -> None:
            name, info = node
            handle = supervisor.from_info(info.get("setup") or {})
            if handle is not None:
                self.provider.stop(handle, self.settings.grace_seconds)
            self.provider.release_node(cluster_id, name, self.keys_of(info))

        if nodes:
            with ThreadPoolExecutor(min(len(nodes), MAX_RELEASES), thread_name_prefix="release-node") as pool:
                list(pool.map(release, nodes))  # (raises the first node's error, once all have been released)
        shared = self.provider.shared_dir(cluster_id)
        shutil.rmtree(shared, ignore_errors=True)
        with contextlib.suppress(OSError):  # the cluster's own directory, once nothing else is in it
            shared.parent.rmdir()


def file_server_dir(home: Path, file_server_id: int) -> Path:
    """Where a file server's data is on this host."""
    return home / "fileservers" / str(file_server_id)


def file_server_path(ctx: Ctx, home: Path) -> Callable[[str, str], Path]:
    """Resolves a file server's ARM id and a path in it to a directory on this host (made if missing)."""

    def resolve(resource_id: str, source: str) -> Path:
        row = file_server_row(ctx, resource_id, "fileServer.id")
        root = file_server_dir(home, row.id)
        root.mkdir(parents=True, exist_ok=True)
        return root / source.strip("/") if source.strip("/") else root

    return resolve


def describe_node(name: str, info: dict[str, Any]) -> str:
    """A node's name with where it ran (for errors): ``node-1 (Ray node 3f2a..., 10.0.0.5)``."""
    where = info.get("ray_node_id") or info.get("where")
    return f"{name} (Ray node {str(where)[:12]}, {info.get('address', '')})".replace(", )", ")") if where else name


def settled_cluster(cluster: Cluster) -> bool:
    """A cluster with nothing to do until the API or a setup task changes it: steady at a fixed size."""
    return (
        "manual" in cluster.spec["scaleSettings"]
        and cluster.allocation_state == "steady"
        and all(n.state in (NodeState.IDLE, NodeState.RUNNING, NodeState.UNUSABLE) for n in cluster.nodes)
    )
