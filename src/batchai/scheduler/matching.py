"""Which queued jobs start now, on which free nodes: a pure function, testable without a database.

Policy, per cluster:
- Order: priority (high, normal, low), then first come first served.
- Gang scheduling: a job gets all its ``nodeCount`` nodes at once, or none.
- Backfill with a bound: when the job at the head does not fit, smaller jobs behind it may start on the
  free nodes, so it never blocks them forever; each time one does, the head job's ``skips`` grows. Once
  a job has been skipped ``max_skips`` times it holds a reservation: nothing behind it starts on that
  cluster until it has started, so it never starves.
- Staging: once a cluster has no free node left, the jobs next in its line are staged on its busy nodes,
  one per node: each starts the moment the job on its node ends, without waiting for a pass (``stage``).
  Only single-node jobs are, and only while the line ahead of them is single-node too: a job that needs
  several nodes stops the staging, so that nodes come free for it. A job that arrives later with a higher
  priority waits for at most the staged job of a node.
- A job bigger than its cluster can now become (it was resized down below its ``nodeCount``) waits aside:
  it neither starts nor blocks anyone, until the cluster grows again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QueuedJob:
    id: int
    cluster_id: int
    priority: int  # higher first: high=1, normal=0, low=-1
    order: tuple[float, int]  # first come first served: creation time (or place in line) and id
    node_count: int
    skips: int = 0


@dataclass(frozen=True)
class Decision:
    starts: dict[int, list[int]]  # job id -> node ids
    skipped: dict[int, int]  # job id -> new skip count
    staged: dict[int, int] = field(default_factory=dict)  # job id -> busy node id (``place``)

    def placed(self) -> int:
        """How many nodes were given: free ones to the jobs that start, busy ones to the jobs staged."""
        return sum(len(nodes) for nodes in self.starts.values()) + len(self.staged)


def place(
    queued: Sequence[QueuedJob],
    free_nodes: dict[int, list[int]],
    busy_nodes: dict[int, list[int]],
    max_skips: int = 5,
    capacity: dict[int, int] | None = None,
) -> Decision:
    """A pass's whole decision: which jobs start on free nodes (``decide``), then which of the rest are staged
    on busy nodes (``stage``), only on clusters whose free nodes were all given: else the head of their line
    waits for more."""
    decision = decide(queued, free_nodes, max_skips, capacity)
    given = {cluster_id: 0 for cluster_id in free_nodes}
    for job in queued:
        if job.id in decision.starts:
            given[job.cluster_id] = given.get(job.cluster_id, 0) + len(decision.starts[job.id])
    line = [
        job
        for job in queued
        if job.id not in decision.starts and given.get(job.cluster_id, 0) == len(free_nodes.get(job.cluster_id, []))
    ]
    return Decision(decision.starts, decision.skipped, stage(line, busy_nodes))


def decide(
    queued: Sequence[QueuedJob],
    free_nodes: dict[int, list[int]],
    max_skips: int = 5,
    capacity: dict[int, int] | None = None,
) -> Decision:
    """``capacity``: the most nodes each cluster can have (a cluster missing from it: no limit)."""
    starts: dict[int, list[int]] = {}
    skipped: dict[int, int] = {}
    by_cluster: dict[int, list[QueuedJob]] = {}
    for job in queued:
        by_cluster.setdefault(job.cluster_id, []).append(job)
    for cluster_id, jobs in by_cluster.items():
        free = list(free_nodes.get(cluster_id, []))
        waiting: list[QueuedJob] = []  # jobs ahead in line that did not fit
        for job in sorted(jobs, key=lambda j: (-j.priority, j.order)):
            if not free:
                break  # nothing more can start on this cluster now
            if capacity is not None and job.node_count > capacity.get(cluster_id, job.node_count):
                continue  # can never fit as the cluster is now: it must not hold a reservation
            if job.node_count <= len(free):
                starts[job.id] = free[: job.node_count]
                free = free[job.node_count :]
                for w in waiting:
                    skipped[w.id] = skipped.get(w.id, w.skips) + 1
                continue
            waiting.append(job)
            if job.skips >= max_skips:
                break  # a reservation: the starved job goes first
    return Decision(starts, skipped)


def stage(line: Sequence[QueuedJob], busy_nodes: dict[int, list[int]]) -> dict[int, int]:
    """Which queued jobs are staged on which busy nodes (job id -> node id): per cluster, the head of its
    ``line`` (the jobs that did not start), in order, one per node of ``busy_nodes`` (nodes running a
    single-node job with nothing staged), stopping at the first job that needs more than one node. A
    cluster with free nodes left has none in ``busy_nodes``: the caller stages only on clusters whose free
    nodes were all given."""
    staged: dict[int, int] = {}
    by_cluster: dict[int, list[QueuedJob]] = {}
    for job in line:
        by_cluster.setdefault(job.cluster_id, []).append(job)
    for cluster_id, jobs in by_cluster.items():
        nodes = list(busy_nodes.get(cluster_id, []))
        for job in sorted(jobs, key=lambda j: (-j.priority, j.order)):
            if not nodes or job.node_count != 1:
                break
            staged[job.id] = nodes.pop(0)
    return staged
