"""The local provider, the embedded default: a cluster's nodes are work areas on this host and its
processes run here, each in its own session, started by the home's launcher (``runtime.launcher``) so
that they outlive a restart of the server. GPUs, if any, are shared out among the nodes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from batchai.providers.base import ProcessSpec
from batchai.runtime import node_python, orphans, supervisor
from batchai.runtime.launch import NodeSlot
from batchai.runtime.launcher import Follower, LauncherClient, Spawn
from batchai.runtime.supervisor import Handle, Outcome


@cache
def host_gpus() -> tuple[int, ...]:
    """GPU indices of this host (``nvidia-smi -L``); none when there is no NVIDIA driver."""
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


class LocalProvider:
    name = "local"
    node_keys: tuple[str, ...] = ()
    launch_threads = 1  # starts are quick; one thread records each pass's starts together

    def __init__(
        self, root: Path, run_dir: Path, gpus: tuple[int, ...] | None = None, grace_seconds: float = 10.0
    ) -> None:
        self.root = root
        self.gpus = host_gpus() if gpus is None else gpus
        self.grace_seconds = grace_seconds  # what a process left running when it ended has to stop
        self._launcher = LauncherClient(run_dir)

    def node_dir(self, cluster_id: int, node_name: str) -> Path:
        return self.root / str(cluster_id) / node_name

    def shared_dir(self, cluster_id: int) -> Path:
        return self.root / str(cluster_id) / "shared"

    def gpus_for(self, node: dict[str, Any], node_index: int, node_count: int) -> tuple[int, ...]:
        """Node ``i`` of ``n`` gets an equal, disjoint share of the host's GPUs."""
        if not self.gpus or node_count < 1:
            return ()
        share = max(1, len(self.gpus) // node_count)
        return tuple(self.gpus[(node_index * share) % len(self.gpus) :][:share])

    def prepare_node(
        self, cluster_id: int, node_name: str, links: list[tuple[Path, Path]], node: dict[str, str]
    ) -> Path:
        node_dir = prepare_work_area(self.node_dir(cluster_id, node_name), self.shared_dir(cluster_id), links)
        node_python.create(node_dir)  # what a job installs on the node stays there, as on a Batch AI VM
        return node_dir

    def address(self, node: dict[str, Any]) -> str:
        return "127.0.0.1"

    def free_ports(self, node: NodeSlot, count: int) -> list[int]:
        return free_ports(count)

    def start(self, spec: ProcessSpec) -> Handle:
        return self._launcher.start(self._spawn(spec))

    def follows(self, handle: Handle) -> bool:
        return self._launcher.follows(handle)

    def follow(self, after: Handle, spec: ProcessSpec) -> Follower | None:
        if not self._launcher.follows(after):  # (e.g. a launcher started since does not know it)
            return None
        return self._launcher.follow(after, self._spawn(spec))

    def cancel(self, follower: Follower) -> bool:
        return self._launcher.cancel(follower)

    def _spawn(self, spec: ProcessSpec) -> Spawn:
        """What the launcher starts: ``argv`` without a shell, with bash running the body as the fallback if it
        cannot start; else the body in a script that records its exit code."""
        argv, fallback, env = spec.argv, None, spec.env
        if argv is not None:  # without a shell, as bash would have run it; bash runs it if it cannot start
            fallback, env = ["bash", "-c", spec.body], {**env, "PWD": str(spec.cwd)}
        else:
            spec.script.parent.mkdir(parents=True, exist_ok=True)
            spec.script.write_text(supervisor.wrapper_script(spec.body, spec.exit_file))
            argv = ["bash", str(spec.script)]
        return Spawn(
            argv,
            env,
            spec.cwd,
            spec.stdout,
            spec.stderr,
            spec.exit_file,
            fallback=fallback,
            grace=self.grace_seconds,
            keep=spec.keep,
        )

    def poll(self, handle: Handle) -> Outcome | None:
        return self._launcher.outcome(handle)

    def wait(self, handle: Handle, timeout: float | None = None) -> Outcome | None:
        ended = threading.Event()
        if not self._launcher.watch(handle, ended.set):
            return supervisor.wait(handle, timeout)
        return self._launcher.outcome(handle) if ended.wait(timeout) else None

    def on_exit(self, handle: Handle, callback: Callable[[], None]) -> bool:
        return self._launcher.watch(handle, callback)

    def stop(self, handle: Handle, grace: float) -> Outcome:
        return supervisor.stop(handle, grace)

    def release_node(self, cluster_id: int, node_name: str, node: dict[str, str]) -> None:
        node_dir = self.node_dir(cluster_id, node_name)
        supervisor.stop_left_on(node_dir, self.grace_seconds)
        shutil.rmtree(node_dir, ignore_errors=True)

    def sweep(self, clusters: set[int], nodes: set[tuple[int, str]]) -> None:
        """At start, before any node is made: release what a server that stopped while releasing left behind.
        A delete removes a cluster's (or a node's) rows first and releases its nodes after the commit, and the
        SIGKILL of what ignored SIGTERM is a timer of the server's: a server killed in between leaves work
        areas and processes (a setup task, its daemons) that no row names any more. ``clusters`` and
        ``nodes``: what the database holds; everything else under the root goes. The nodes that stay get their
        Python environments pointed at this server's (``node_python.refresh``)."""
        if not self.root.is_dir():
            return
        found = {(p.parent.name, p.name) for p in self.root.glob("*/*") if p.is_dir()}
        for tag in orphans.tags_under(self.root):  # (their directory may be gone already)
            parts = tag.relative_to(self.root).parts
            if len(parts) >= 2:
                found.add((parts[0], parts[1]))
        seen = {p.name for p in self.root.iterdir() if p.is_dir()} | {cluster for cluster, _ in found}
        for cluster in sorted(c for c in seen if c.isdigit() and int(c) not in clusters):
            supervisor.stop_left_on(self.root / cluster, self.grace_seconds)
            shutil.rmtree(self.root / cluster, ignore_errors=True)
        for cluster, name in sorted(found):
            if (
                cluster.isdigit()
                and int(cluster) in clusters
                and name != "shared"
                and (int(cluster), name) not in nodes
            ):
                self.release_node(int(cluster), name, {})
        for cluster_id, name in nodes:
            node_python.refresh(self.node_dir(cluster_id, name))

    def inventory(self) -> list[dict[str, str]] | None:
        return None  # nodes are work areas on this host, made on demand

    def reserve(self, key: str, nodes: list[dict[str, str]]) -> None:
        pass  # the scheduler's choice is the reservation

    def unreserve(self, key: str) -> None:
        pass

    def close(self) -> None:
        self._launcher.close()


def prepare_work_area(node_dir: Path, shared_dir: Path, links: list[tuple[Path, Path]]) -> Path:
    """A node's work area (mounts, jobs, setup) with its cluster mounts linked in; idempotent."""
    for sub in ("mounts", "jobs", "setup"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    shared_dir.mkdir(parents=True, exist_ok=True)
    for link, target in links:
        make_link(link, target)
    return node_dir


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` now (the OS picks them; all held until all are found)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def make_link(link: Path, target: Path) -> None:
    """A symlink ``link`` -> ``target`` (the 'mount' of a volume on a local node), replacing a stale one."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"cannot mount at {link}: something else is there")
    link.symlink_to(target, target_is_directory=True)
