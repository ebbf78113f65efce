"""Staged jobs: the job next in line waits on a busy node and starts the moment the job there ends (the node's
launcher starts it), shown as queued until then. Its start is called off when it is terminated or deleted, when
a job of a higher priority comes, when its node may go, and it is never run twice across a server's crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from batchai.runtime import supervisor
from tests.conftest import Server, leftovers, process_gone, url, wait_for
from tests.integration.jobkit import Bench, make_bench


@pytest.fixture
def bench(server: Server, tmp_path: Path) -> Bench:
    return make_bench(server, "stage.rg", tmp_path)


def _state(bench: Bench, name: str) -> str:
    """The job's state as the server keeps it (the API shows a staged job as queued)."""
    with sqlite3.connect(bench.server.home / "batchai.db") as db:
        return str(db.execute("SELECT execution_state FROM jobs WHERE name = ?", (name,)).fetchone()[0])


def _exit_file(bench: Bench, name: str) -> Path:
    """The exit file the job's (first attempt's) process was started with, on the cluster's node-0: its end is
    written down there or in its pid file (``supervisor.recorded``)."""
    with sqlite3.connect(bench.server.home / "batchai.db") as db:
        (job_id,) = db.execute("SELECT id FROM jobs WHERE name = ?", (name,)).fetchone()
    (node_dir,) = (bench.server.home / "nodes").glob("*/node-0")
    return node_dir / "jobs" / str(job_id) / "task-0-1.exit"


def _blocker(bench: Bench, gate: Path) -> None:
    """A job that runs until ``gate`` exists, and writes when it ended (bash's clock) beside it."""
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo $EPOCHREALTIME > {gate}.ended"
    bench.submit("blocker", customToolkitSettings={"commandLine": command})

    def recorded() -> bool:  # (its process started and written down: a job may be staged behind it)
        with sqlite3.connect(bench.server.home / "batchai.db") as db:
            row = db.execute("SELECT t.pid FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.name = 'blocker'")
            return (row.fetchone() or (None,))[0] is not None

    wait_for(recorded, message="the blocker's process to be recorded")


def _marking(bench: Bench, name: str, marks: Path, **props: Any) -> None:
    """A job that appends its name and the time it started (bash's clock) to ``marks``."""
    bench.submit(name, customToolkitSettings={"commandLine": f"echo {name} $EPOCHREALTIME >> {marks}"}, **props)


def _runs(marks: Path) -> list[str]:
    return [line.split()[0] for line in marks.read_text().splitlines()] if marks.exists() else []


def test_a_staged_job_is_shown_queued_and_starts_once_the_job_ahead_has_ended(bench: Bench) -> None:
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    wait_for(lambda: _state(bench, "next") == "staged", message="the job to be staged")
    props = bench.job("next")
    assert props["executionState"] == "queued" and "executionInfo" not in props
    jobs = bench.server.http.get(url(f"{bench.ws}/experiments/exp/jobs")).json()["value"]
    assert {j["name"]: j["properties"]["executionState"] for j in jobs}["next"] == "queued"
    nodes = bench.server.http.post(url(bench.job_path("next") + "/listRemoteLoginInformation")).json()["value"]
    assert nodes == []  # (no node yet, as far as anyone can tell)
    gate.touch()
    done = bench.wait_job("next")
    assert done["executionState"] == "succeeded", done.get("executionInfo")
    blocker = bench.job("blocker")
    assert blocker["executionState"] == "succeeded"
    assert _runs(marks) == ["next"]
    assert float(marks.read_text().split()[1]) > float((bench.tmp / "gate.ended").read_text())  # after the blocker
    assert done["executionInfo"]["startTime"] >= blocker["executionInfo"]["endTime"]
    log = (bench.stdouterr("next") / "execution.log").read_text()
    assert log.count("Job started on 1 node(s)") == 1 and "The job succeeded." in log


@pytest.mark.parametrize("how", ["terminate", "delete"])
def test_a_staged_job_that_is_terminated_or_deleted_never_runs(bench: Bench, how: str) -> None:
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    wait_for(lambda: _state(bench, "next") == "staged", message="the job to be staged")
    if how == "terminate":
        bench.terminate("next")
        props = bench.wait_job("next")
        assert props["executionState"] == "failed"
        assert props["executionInfo"]["errors"][0]["code"] == "JobTerminated"
    else:
        assert bench.server.http.delete(url(bench.job_path("next"))).status_code in (200, 202, 204)
        assert bench.server.http.get(url(bench.job_path("next"))).status_code == 404
    gate.touch()
    assert bench.wait_job("blocker")["executionState"] == "succeeded"
    _marking(bench, "after", marks)  # the node is free for the next job, and the called-off one never ran
    assert bench.wait_job("after")["executionState"] == "succeeded"
    assert _runs(marks) == ["after"]
    assert bench.cluster_state()["nodeStateCounts"]["idleNodeCount"] == 1


def test_a_job_of_a_higher_priority_takes_the_place_of_a_staged_one(bench: Bench) -> None:
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "low", marks, schedulingPriority="low")
    wait_for(lambda: _state(bench, "low") == "staged", message="the low job to be staged")
    _marking(bench, "high", marks, schedulingPriority="high")
    wait_for(lambda: _state(bench, "high") == "staged", message="the high job to take its place")
    assert _state(bench, "low") == "queued"
    gate.touch()
    assert bench.wait_job("low")["executionState"] == "succeeded"
    assert _runs(marks) == ["high", "low"]


def test_a_resize_calls_off_the_start_of_a_job_staged_on_a_leaving_node(bench: Bench) -> None:
    bench.cluster(option="waitforjobcompletion")
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    wait_for(lambda: _state(bench, "next") == "staged", message="the job to be staged")
    scale = {"manual": {"targetNodeCount": 0, "nodeDeallocationOption": "waitforjobcompletion"}}
    assert bench.server.http.patch(
        url(f"{bench.ws}/clusters/c"), json={"properties": {"scaleSettings": scale}}
    ).is_success
    wait_for(lambda: _state(bench, "next") == "queued", message="the staged job to wait in line again")
    gate.touch()
    assert bench.wait_job("blocker")["executionState"] == "succeeded"
    bench.wait_nodes(total=0)
    assert bench.job("next")["executionState"] == "queued" and _runs(marks) == []
    scale["manual"]["targetNodeCount"] = 1
    assert bench.server.http.patch(
        url(f"{bench.ws}/clusters/c"), json={"properties": {"scaleSettings": scale}}
    ).is_success
    assert bench.wait_job("next")["executionState"] == "succeeded"
    assert _runs(marks) == ["next"]


@pytest.mark.parametrize("gate_while_down", [False, True])
def test_a_job_staged_when_the_server_died_runs_once(bench: Bench, gate_while_down: bool) -> None:
    """The launcher drops a dead server's staged starts (the job ahead may end while no server runs); the
    restarted server puts the job back in line, and it runs once."""
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    wait_for(lambda: _state(bench, "next") == "staged", message="the job to be staged")
    blocker_exit = _exit_file(bench, "blocker")
    bench.server.stop(kill=True)
    if gate_while_down:  # the blocker ends while no server runs: what was staged behind it must not start
        gate.touch()
        wait_for(lambda: supervisor.recorded(blocker_exit)[0] == 0, message="the blocker to end")
    bench.server.start()
    gate.touch()
    assert bench.wait_job("next")["executionState"] == "succeeded"
    assert bench.wait_job("blocker")["executionState"] == "succeeded"
    assert _runs(marks) == ["next"]


def test_a_job_staged_when_the_launcher_died_runs_once_later(bench: Bench) -> None:
    """The node's launcher killed while a job is staged on it: the staged start is gone with it; the job waits
    in line again and runs once the node is free."""
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    wait_for(lambda: _state(bench, "next") == "staged", message="the job to be staged")
    (launcher,) = [p for p in leftovers(bench.server.home) if "batchai.runtime.launcher" in p.info["cmdline"]]
    launcher.kill()
    wait_for(lambda: process_gone(launcher.pid), message="the launcher to die")
    wait_for(lambda: _state(bench, "next") == "queued", message="the job to wait in line again")
    assert _runs(marks) == []
    gate.touch()
    assert bench.wait_job("next")["executionState"] == "succeeded"
    assert bench.wait_job("blocker")["executionState"] == "succeeded"  # (its shell recorded its exit code)
    assert _runs(marks) == ["next"]


def test_a_server_started_with_no_staging_starts_jobs_only_on_free_nodes(bench: Bench) -> None:
    bench.server.env["BATCHAI_STAGE_JOBS"] = "0"  # (as batchai server start --no-staging)
    bench.server.restart()
    bench.cluster()
    gate, marks = bench.tmp / "gate", bench.tmp / "marks"
    _blocker(bench, gate)
    _marking(bench, "next", marks)
    _marking(bench, "probe", marks)
    bench.terminate("probe")  # ended by a pass of the engine's, which saw 'next' waiting beside a busy node
    assert bench.wait_job("probe")["executionState"] == "failed"
    assert _state(bench, "next") == "queued"
    gate.touch()
    assert bench.wait_job("next")["executionState"] == "succeeded"
    assert _runs(marks) == ["next"]
