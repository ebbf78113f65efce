"""How a job's end is told (``scheduler.endings.tell``): pure, called with plain tasks and real stderr files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchai.scheduler.endings import tell
from batchai.states import JobState


@dataclass
class T:
    index: int
    exit_code: int | None
    info: dict[str, Any] = field(default_factory=dict)


def stderr(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_job_whose_tasks_exited_0_succeeded() -> None:
    ending = tell([T(0, 0), T(1, 0)], None, {}, {}, requeue_allowed=True)
    assert (ending.state, ending.exit_code, ending.error) == (JobState.SUCCEEDED, 0, None)
    assert ending.message == "The job succeeded."


def test_a_failure_quotes_the_stderr_of_the_task_that_failed_by_itself(tmp_path: Path) -> None:
    master = T(0, 0, {"stderr": stderr(tmp_path, "0.txt", "fine\n")})
    stopped = T(1, -15, {"stopped": True, "stderr": stderr(tmp_path, "1.txt", "killed\n")})
    failed = T(2, 7, {"stderr": stderr(tmp_path, "2.txt", "one\ntwo\nboom\n")})
    ending = tell([master, stopped, failed], None, {}, {}, requeue_allowed=True)
    assert (ending.state, ending.exit_code) == (JobState.FAILED, 7)
    assert ending.error is not None
    assert ending.error["code"] == "JobFailed"
    assert ending.error["message"] == "The job exited with code 7 (task 2). Last lines of stderr: one | two | boom"
    assert ending.error["details"] == [{"name": "stderr", "value": "one\ntwo\nboom"}]
    assert ending.message == f"The job failed: {ending.error['message']}"


def test_parameter_servers_do_not_decide_the_ending() -> None:
    ending = tell([T(0, 0), T(1, -15, {"auxiliary": True})], None, {}, {}, requeue_allowed=True)
    assert ending.state == JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("user", "JobTerminated"),
        ("wallclock", "MaxWallClockTimeExceeded"),
        ("cluster_deleted", "ClusterDeleted"),
        ("deleted", "JobDeleted"),
        ("deallocated", "NodeDeallocated"),
        ("node_lost", "NodeLost"),
        ("launch", "LaunchFailed"),
    ],
)
def test_a_stopped_job_failed_with_the_reason_it_was_stopped(tmp_path: Path, reason: str, code: str) -> None:
    master = T(0, -15, {"stderr": stderr(tmp_path, "0.txt", "interrupted\n")})
    spec = {"constraints": {"maxWallClockTime": "PT1M"}}
    ending = tell([master], reason, {"lost_node": "node-1"}, spec, requeue_allowed=True)
    assert (ending.state, ending.exit_code) == (JobState.FAILED, -15)
    assert ending.error is not None
    assert ending.error["code"] == code
    assert ending.error["details"] == [{"name": "stderr", "value": "interrupted"}]
    if reason == "wallclock":
        assert "(PT1M)" in ending.error["message"]
    if reason == "node_lost":
        assert "node-1" in ending.error["message"]


def test_a_launch_error_is_the_error() -> None:
    notes = {"launch_error": {"code": "MountFailed", "message": "could not mount"}}
    ending = tell([T(0, None)], "launch", notes, {}, requeue_allowed=True)
    assert ending.error == {"code": "MountFailed", "message": "could not mount", "details": []}


def test_processes_that_vanished_are_lost_not_failed_with_a_code() -> None:
    ending = tell([T(0, None, {"vanished": True})], None, {}, {}, requeue_allowed=True)
    assert ending.state == JobState.FAILED
    assert ending.error is not None
    assert ending.error["code"] == "JobProcessesLost"


def test_a_job_none_of_which_started_is_requeued_while_it_has_attempts_left() -> None:
    tasks = [T(0, None, {"never_started": True})]
    ending = tell(tasks, None, {}, {}, requeue_allowed=True)
    assert ending.state == JobState.QUEUED
    assert ending.message == "The job was requeued: its processes had not started when the server stopped."
    ending = tell(tasks, None, {}, {}, requeue_allowed=False)
    assert ending.state == JobState.FAILED
    assert ending.error is not None
    assert ending.error["code"] == "JobProcessesLost"


@pytest.mark.parametrize(
    ("notes", "cause"),
    [
        ({}, "its nodes left the cluster."),
        ({"lost_node": "node-0 (127.0.0.1)"}, "node node-0 (127.0.0.1) was lost."),
        ({"launch_error": {"code": "X", "message": "the node went away."}}, "the node went away."),
    ],
)
def test_a_requeue_says_why(notes: dict[str, Any], cause: str) -> None:
    ending = tell([T(0, -15)], "requeue", notes, {}, requeue_allowed=False)
    assert (ending.state, ending.message) == (JobState.QUEUED, f"The job was requeued: {cause}")


OOM = "the kernel's out-of-memory killer sends it when memory runs out"


@pytest.mark.parametrize(
    ("code", "note"),
    [
        (137, f", as a process killed by SIGKILL does ({OOM})"),
        (143, ", as a process killed by SIGTERM does"),
        (139, ", as a process killed by SIGSEGV does"),
        (128, ""),
        (1, ""),
        (250, ""),  # (no signal 122)
    ],
)
def test_an_exit_code_a_signal_gives_says_which_signal(code: int, note: str) -> None:
    ending = tell([T(0, code)], None, {}, {}, requeue_allowed=True)
    assert ending.error is not None
    assert ending.error["message"] == f"The job exited with code {code} (task 0){note}."
