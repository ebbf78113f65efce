"""The engine's settings (from the server's), passed in rather than read from globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineSettings:
    home: Path
    default_python: str
    grace_seconds: float = 10.0
    tick_seconds: float = 1.0
    max_skips: int = 5
    base_env: tuple[tuple[str, str], ...] = ()
    # Run jobs that ask for a container image on the host instead (the server's --containers-on-host).
    containers_on_host: bool = False
    # How many times a job may start: requeues (a lost node, a resize with 'requeue') beyond it fail it.
    max_attempts: int = 3
    # How many queued jobs of a cluster, from the head of its line, each scheduling pass considers.
    queue_window: int = 64
    # How long an auto-scale cluster keeps its autoScale.initialNodeCount nodes after its creation when no
    # job needs them (Azure Batch evaluated auto-scale at most every 5 minutes).
    initial_nodes_seconds: float = 300.0
    # Stage the jobs next in line on busy nodes, to start the moment the job there ends (JobState.STAGED).
    stage_jobs: bool = True
