"""A Ray node that dies while a job runs there, on a Ray cluster whose GCS takes a while to find it dead (as
with Ray's default health checks, tens of seconds): meanwhile the node's agent cannot be reached, which says
nothing yet of whether the job's processes still run. The job must not end until Ray says: then it is
requeued as a lost node's job is (before, it failed at once with JobProcessesLost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchai.providers.ray_cluster import name_prefix
from tests.conftest import assert_nothing_left, leftovers, wait_for
from tests.integration.jobkit import Bench, make_bench
from tests.integration.test_distributed import node_of, start_server, submit_gated
from tests.raykit import RAY_ENV, RayCluster

DEATH_SECONDS = 12.0  # about how long Ray's GCS takes to find a dead node here: 24 failed checks, 0.5 s apart


@pytest.fixture(scope="module")
def slow_ray() -> Iterator[RayCluster]:
    cluster = RayCluster(2, system_config={"health_check_failure_threshold": int(DEATH_SECONDS / 0.5)})
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def on_slow_ray(slow_ray: RayCluster, tmp_path: Path) -> Iterator[tuple[Bench, RayCluster]]:
    server = start_server(tmp_path / "home", {**RAY_ENV, "BATCHAI_RAY_ADDRESS": slow_ray.address})
    try:
        yield make_bench(server, "slow.rg", tmp_path), slow_ray
    finally:
        server.stop()
        slow_ray.kill_agents(name_prefix(server.home))
        wait_for(lambda: not leftovers(server.home), timeout=15, message="the agents' processes to end")
        assert_nothing_left(server.home)


def test_a_job_on_a_node_ray_has_not_yet_found_dead_waits_then_is_requeued(
    on_slow_ray: tuple[Bench, RayCluster],
) -> None:
    bench, ray = on_slow_ray
    bench.cluster(target=1, option="requeue")
    bench.wait_nodes(idle=1, timeout=90)
    gate = bench.tmp / "gate"
    submit_gated(bench, "survives", gate)
    first = node_of(bench, "survives", 0)
    ray.remove_node(first)
    killed = time.monotonic()

    def alive() -> bool:
        return first in [n["NodeID"] for n in ray.ray.nodes() if n["Alive"]]

    # While Ray still counts the node alive, the job is running as far as anyone can tell.
    while alive() and time.monotonic() - killed < 3 * DEATH_SECONDS:
        assert bench.job("survives")["executionState"] == "running"
        time.sleep(0.2)
    assert time.monotonic() - killed > 3, "Ray found the node dead at once: nothing tested"
    # Once Ray finds it dead, the job starts again on the other machine.
    wait_for(lambda: node_of(bench, "survives", 0) != first, timeout=60, message="the job to start again elsewhere")
    gate.touch()
    props = bench.wait_job("survives", timeout=60)
    assert props["executionState"] == "succeeded", props
    log = (bench.stdouterr("survives") / "execution.log").read_text()
    assert "The job was requeued: node node-0 (Ray node" in log and "attempt 2" in log, log
    state = bench.cluster_state()
    assert [e["code"] for e in state["errors"]] == ["NodeLost"], state["errors"]
    assert "left the cluster" in state["errors"][0]["message"]
