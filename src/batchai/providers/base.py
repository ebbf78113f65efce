"""The node provider contract.

A provider gives a cluster its nodes and runs processes on them. The engine (scheduler.engine) decides
what runs where; the provider only does it. Contract:

- ``prepare_node`` makes a node's work area and cluster mounts; it is idempotent. It may raise
  ``NodeNotReady`` instead of blocking (the node is still coming up): call it again later.
- ``start`` starts one process (a task, or a setup task) on a node (``node``: the node's entries named
  in ``node_keys``) and returns a ``Handle`` that survives a restart of the server (it is stored); it
  never blocks on the process.
- ``address`` is the node's address as other nodes reach it; ``free_ports`` finds ports free on it
  (for the rendezvous of distributed jobs).
- ``follow`` may start a process the moment another on its node ends (see its docstring); ``cancel``
  drops such a follower before it starts.
- ``poll`` returns None while the process runs, then its ``Outcome`` (exit code None if it vanished).
- ``stop`` ends a process tree (SIGTERM, grace period, SIGKILL) and is idempotent: stopping what has
  already ended is not an error.
- ``release_node`` stops what still runs on a node (what its setup task left running: SIGTERM, SIGKILL
  after the grace period, without waiting) and removes its work area; idempotent. It never touches storage
  volumes.
- ``inventory`` lists the machines that can be nodes (each a dict holding ``node_keys`` and ``address``),
  or None when the provider makes nodes on demand (the local provider). A node whose machine leaves the
  inventory is lost.
- ``reserve`` takes a job's nodes at once (all or none, raising ``LaunchError`` when it cannot within its
  timeout); ``unreserve`` gives them back and is idempotent. ``close`` lets go of the provider's
  connections; processes keep running.
- Any call may raise ``ProviderUnavailable`` rather than block while the provider cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchai.runtime.launch import NodeSlot
from batchai.runtime.launcher import Follower
from batchai.runtime.supervisor import Handle, Outcome


class ProviderUnavailable(Exception):
    """The provider cannot be reached now (e.g. its Ray cluster is down); the engine tries again later."""


class NodeNotReady(Exception):
    """The node is still coming up (e.g. its agent is starting); prepare it again on a later pass."""


@dataclass(frozen=True)
class ProcessSpec:
    """A process to start on a node: ``bash script`` (written with ``body``), or ``argv`` when given, the same
    process without the shell (``launch.plain_argv``), which a provider may start instead (and then need not
    write the script). ``node``: the node's entries named in ``node_keys``. ``keep``: what the process leaves
    running lives on when it ends, until ``release_node`` (a setup task's daemons)."""

    script: Path
    body: str
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    exit_file: Path
    node: dict[str, str]
    argv: list[str] | None = None
    keep: bool = False


class NodeProvider(Protocol):
    name: str
    gpus: tuple[int, ...]  # GPU indices to share among nodes (empty: none)
    node_keys: tuple[str, ...]  # the entries of a node's info that identify it to the provider
    # How many jobs may be starting at once: more than one where a start can wait (for Ray to give the
    # nodes), so that it holds up no other job's start.
    launch_threads: int

    def node_dir(self, cluster_id: int, node_name: str) -> Path: ...

    def shared_dir(self, cluster_id: int) -> Path: ...

    def gpus_for(self, node: dict[str, Any], node_index: int, node_count: int) -> tuple[int, ...]:
        """The GPU indices the job processes of node ``node_index`` of ``node_count`` get (``node``: its info):
        their ``CUDA_VISIBLE_DEVICES``; empty hides every GPU."""
        ...

    def prepare_node(
        self, cluster_id: int, node_name: str, links: list[tuple[Path, Path]], node: dict[str, str]
    ) -> Path: ...

    def inventory(self) -> list[dict[str, str]] | None: ...

    def reserve(self, key: str, nodes: list[dict[str, str]]) -> None: ...

    def unreserve(self, key: str) -> None: ...

    def close(self) -> None: ...

    def address(self, node: dict[str, Any]) -> str: ...

    def free_ports(self, node: NodeSlot, count: int) -> list[int]: ...

    def start(self, spec: ProcessSpec) -> Handle:
        """Start the process on its node. What it leaves running is stopped when it ends, unless ``spec.keep``."""
        ...

    def follows(self, handle: Handle) -> bool:
        """Whether a process may follow ``handle`` (``follow``) now."""
        ...

    def follow(self, after: Handle, spec: ProcessSpec) -> Follower | None:
        """Start a process as ``start`` would, the moment ``after`` (a process on the same node) has ended and
        what it left running is gone, without waiting for the server: the node's next job. Its ``handle``
        resolves then. None when the provider cannot (then the engine starts the job once the node is free)."""
        ...

    def cancel(self, follower: Follower) -> bool:
        """Drop a follower that has not started: True if it never will; False if it started (its handle is
        resolved) or may have."""
        ...

    def poll(self, handle: Handle) -> Outcome | None: ...

    def wait(self, handle: Handle, timeout: float | None = None) -> Outcome | None: ...

    def on_exit(self, handle: Handle, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from any thread) once the process has ended; False if this provider cannot
        for this process (the caller then waits for it in a thread of its own)."""
        ...

    def stop(self, handle: Handle, grace: float) -> Outcome: ...

    def release_node(self, cluster_id: int, node_name: str, node: dict[str, str]) -> None: ...

    def sweep(self, clusters: set[int], nodes: set[tuple[int, str]]) -> None:
        """At start, before any node is made: release what no row names any more (``clusters``, ``nodes``: what
        the database holds), left by a server that stopped between a delete's commit and its release."""
        ...
