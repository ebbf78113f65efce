"""The node provider contract.

A provider gives a cluster its nodes and runs processes on them. The engine (scheduler.engine) decides
what runs where; the provider only does it. Contract:

- ``prepare_node`` makes a node's work area and cluster mounts; it is idempotent.
- ``start`` starts one process (a task, or a setup task) and returns a ``Handle`` that survives a
  restart of the server (it is stored); it never blocks on the process.
- ``poll`` returns None while the process runs, then its ``Outcome`` (exit code None if it vanished).
- ``stop`` ends a process tree (SIGTERM, grace period, SIGKILL) and is idempotent: stopping what has
  already ended is not an error.
- ``release_node`` removes a node's work area; idempotent. It never touches storage volumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from batchai.runtime.supervisor import Handle, Outcome


class NodeProvider(Protocol):
    name: str
    gpus: tuple[int, ...]  # GPU indices to share among nodes (empty: none)

    def node_dir(self, cluster_id: int, node_name: str) -> Path: ...

    def shared_dir(self, cluster_id: int) -> Path: ...

    def gpus_for(self, node_index: int, node_count: int) -> tuple[int, ...]: ...

    def prepare_node(self, cluster_id: int, node_name: str, links: list[tuple[Path, Path]]) -> Path: ...

    def start(
        self, script: Path, body: str, *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path, exit_file: Path
    ) -> Handle: ...

    def poll(self, handle: Handle) -> Outcome | None: ...

    def wait(self, handle: Handle, timeout: float | None = None) -> Outcome | None: ...

    def stop(self, handle: Handle, grace: float) -> Outcome: ...

    def release_node(self, cluster_id: int, node_name: str) -> None: ...
