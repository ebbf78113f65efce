"""The scheduling decision, as a pure function: priorities, FIFO, gang scheduling, bounded backfill."""

from __future__ import annotations

from batchai.scheduler.matching import QueuedJob, decide, place, stage


def job(id: int, nodes: int = 1, priority: int = 0, at: float | None = None, skips: int = 0, cluster: int = 1):
    return QueuedJob(id, cluster, priority, (at if at is not None else float(id), id), nodes, skips)


def test_priority_then_first_come_first_served() -> None:
    queued = [job(1, priority=-1), job(2), job(3, priority=1), job(4)]
    assert list(decide(queued, {1: [10, 11, 12]}).starts) == [3, 2, 4]


def test_a_job_gets_all_its_nodes_at_once_or_none() -> None:
    decision = decide([job(1, nodes=2)], {1: [10]})
    assert decision.starts == {}
    assert decide([job(1, nodes=2)], {1: [10, 11]}).starts == {1: [10, 11]}


def test_smaller_jobs_backfill_and_count_as_skips() -> None:
    decision = decide([job(1, nodes=2), job(2), job(3)], {1: [10]})
    assert decision.starts == {2: [10]}
    assert decision.skipped == {1: 1}


def test_a_job_skipped_too_often_holds_a_reservation() -> None:
    decision = decide([job(1, nodes=2, skips=5), job(2)], {1: [10]}, max_skips=5)
    assert decision.starts == {} and decision.skipped == {}


def test_clusters_are_independent() -> None:
    decision = decide([job(1, cluster=1), job(2, cluster=2)], {1: [10], 2: [20]})
    assert decision.starts == {1: [10], 2: [20]}
    assert decide([job(1, cluster=2)], {1: [10]}).starts == {}


def test_nothing_free_nothing_starts() -> None:
    assert decide([job(i) for i in range(1000)], {1: []}).starts == {}


def test_a_job_bigger_than_its_shrunk_cluster_neither_starts_nor_blocks() -> None:
    reserved = job(1, nodes=3, skips=5)  # it held a reservation, then the cluster shrank to 2 nodes
    decision = decide([reserved, job(2)], {1: [10, 11]}, max_skips=5, capacity={1: 2})
    assert decision.starts == {2: [10]}
    assert 1 not in decision.skipped


def test_staging_follows_the_line_one_job_per_busy_node() -> None:
    line = [job(1, priority=0), job(2, priority=1), job(3, priority=0), job(4, priority=0)]
    assert stage(line, {1: [10, 11]}) == {2: 10, 1: 11}


def test_staging_stops_at_a_job_that_needs_several_nodes() -> None:
    """Staged jobs keep nodes busy: behind a gang job nothing is staged, so that its nodes come free."""
    line = [job(1), job(2, nodes=2), job(3)]
    assert stage(line, {1: [10, 11]}) == {1: 10}
    assert stage([job(2, nodes=2), job(3)], {1: [10, 11]}) == {}


def test_staging_is_per_cluster() -> None:
    line = [job(1, cluster=1), job(2, cluster=2), job(3, cluster=2)]
    assert stage(line, {2: [20]}) == {2: 20}


def test_a_pass_starts_on_free_nodes_then_stages_the_rest_of_the_line_on_busy_ones() -> None:
    decision = place([job(1), job(2), job(3), job(4)], {1: [10]}, {1: [11, 12]})
    assert decision.starts == {1: [10]}
    assert decision.staged == {2: 11, 3: 12}
    assert decision.placed() == 3


def test_a_cluster_with_a_free_node_left_stages_nothing_its_head_waits_for_more() -> None:
    # Job 1 needs two nodes: the free one stays free for it, and nothing is staged behind it on busy nodes.
    decision = place([job(1, nodes=2), job(2, nodes=2)], {1: [10]}, {1: [11]})
    assert decision.starts == {} and decision.staged == {}
    # Another cluster whose free nodes were all given stages as usual.
    decision = place([job(1, nodes=2), job(3, cluster=2), job(4, cluster=2)], {1: [10], 2: [20]}, {2: [21]})
    assert decision.starts == {3: [20]} and decision.staged == {4: 21}


def test_a_cluster_with_no_free_node_stages_its_line() -> None:
    decision = place([job(1, priority=-1), job(2, priority=1)], {}, {1: [11]})
    assert decision.starts == {} and decision.staged == {2: 11}
