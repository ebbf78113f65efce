"""How a job ends: its final state, error and exit code, told from why it stopped and how its tasks ended.

Pure: the engine gathers the facts (the tasks' exit codes, the stop reason, a lost node) and applies the
result (``Engine._finish``); ``tell`` decides, and unit tests call it without a database or processes. The
tasks may be ``Task`` rows or anything with ``index``, ``exit_code`` and ``info``.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from batchai.runtime import supervisor
from batchai.states import JobState


class TaskFacts(Protocol):
    index: int
    exit_code: int | None
    info: dict[str, Any]


T = TypeVar("T", bound=TaskFacts)


@dataclass(frozen=True)
class Ending:
    """``state`` is SUCCEEDED, FAILED or QUEUED (requeued: nothing of it is kept but its logs); ``message``
    is the line for the job's execution log."""

    state: JobState
    message: str
    error: dict[str, Any] | None = None
    exit_code: int | None = None


SUCCEEDED = Ending(JobState.SUCCEEDED, "The job succeeded.", exit_code=0)


def failed(error: dict[str, Any], exit_code: int | None) -> Ending:
    return Ending(JobState.FAILED, f"The job failed: {error['message']}", error, exit_code)


# Why a job was stopped (``Job.stop_reason``), told as its error.
STOP_ERRORS: dict[str, dict[str, str]] = {
    "user": {"code": "JobTerminated", "message": "The job was terminated by the user."},
    "cluster_deleted": {"code": "ClusterDeleted", "message": "The job's cluster was deleted."},
    "deleted": {"code": "JobDeleted", "message": "The job was deleted."},
    "deallocated": {
        "code": "NodeDeallocated",
        "message": "The job was terminated because its nodes were removed from the cluster.",
    },
}
PROCESSES_LOST = {
    "code": "JobProcessesLost",
    "message": "The job's processes ended without recording an exit code: what watched them (the node's "
    "launcher or agent, or the node itself) went away while they ran. Their output is kept.",
}


def tell(
    tasks: Sequence[TaskFacts],
    reason: str | None,
    notes: dict[str, Any],
    spec: dict[str, Any],
    requeue_allowed: bool,
) -> Ending:
    """The ending of a job whose tasks have all ended. ``reason``: why it was stopped, if it was (a lost
    node's already resolved to ``node_lost`` or ``requeue``); ``notes``: the job's notes (``lost_node``,
    ``launch_error``); ``requeue_allowed``: whether it may start again if none of it started (attempts
    left)."""
    never_started = any(t.info.get("never_started") for t in essential(tasks))
    if reason is None and never_started and requeue_allowed:
        reason = "requeue"  # nothing of it ran: it starts again rather than failing
    if reason == "requeue":
        return Ending(JobState.QUEUED, f"The job was requeued: {_requeue_cause(never_started, notes)}")
    master = next((t for t in tasks if t.index == 0), None)
    last = stderr_tail(master.info.get("stderr") if master else None)
    code = master.exit_code if master else None
    error: dict[str, Any]
    if reason in STOP_ERRORS:
        error = dict(STOP_ERRORS[reason])
    elif reason == "wallclock":
        limit = spec.get("constraints", {}).get("maxWallClockTime")
        error = {
            "code": "MaxWallClockTimeExceeded",
            "message": f"The job ran longer than its maxWallClockTime ({limit}) and was stopped.",
        }
    elif reason == "node_lost":
        error = {
            "code": "NodeLost",
            "message": f"The job's node {notes.get('lost_node', '')} was lost while the job ran.",
        }
    elif reason == "launch":
        error = dict(notes.get("launch_error") or {"code": "LaunchFailed", "message": "launch failed"})
    elif any(t.info.get("vanished") or t.info.get("never_started") for t in essential(tasks)):
        error = dict(PROCESSES_LOST)
    else:
        failures = [t for t in essential(tasks) if t.exit_code != 0]
        if not failures:
            return SUCCEEDED
        worst = first_failure(failures)  # whose stderr the error quotes
        code = worst.exit_code
        if worst.info.get("stderr"):
            last = stderr_tail(worst.info["stderr"])
        error = exit_error(worst.index, worst.exit_code, last)
    error["details"] = error.get("details") or stderr_details(last)
    return failed(error, code)


def _requeue_cause(never_started: bool, notes: dict[str, Any]) -> str:
    if never_started:
        return "its processes had not started when the server stopped."
    if notes.get("lost_node"):
        return f"node {notes['lost_node']} was lost."
    if notes.get("launch_error"):
        return str(notes["launch_error"]["message"])
    return "its nodes left the cluster."


def essential(tasks: Sequence[T]) -> list[T]:
    """The tasks whose ending ends the job (all but parameter servers)."""
    return [t for t in tasks if not t.info.get("auxiliary")]


def first_failure(failed: list[Any]) -> Any:
    """Of a job's failed tasks (Tasks or rows), the one that failed by itself rather than one the engine
    stopped because of it."""
    return next((t for t in failed if not t.info.get("stopped")), failed[0])


def ended_oddly(info: dict[str, Any]) -> bool:
    """Whether a task ended without an exit code of its own: it vanished, its node was lost, or it never started."""
    return bool(info.get("vanished") or info.get("node_lost") or info.get("never_started"))


def stderr_tail(path: str | None) -> list[str]:
    return supervisor.tail(Path(path)) if path else []


def stderr_details(last: list[str]) -> list[dict[str, str]]:
    return [{"name": "stderr", "value": "\n".join(last)}] if last else []


def exit_error(index: int, code: int | None, last: list[str]) -> dict[str, Any]:
    """The error of a job whose task ``index`` exited with ``code``, quoting the end of its stderr."""
    tail_text = f" Last lines of stderr: {' | '.join(last[-3:])}" if last else ""
    return {
        "code": "JobFailed",
        "message": f"The job exited with code {code} (task {index}){_signal_note(code)}.{tail_text}",
        "details": stderr_details(last),
    }


def _signal_note(code: int | None) -> str:
    """What an exit code above 128 says: the code a shell gives a process a signal killed (128 + its number),
    which batchai records for the processes it starts without a shell too."""
    if code is None or code <= 128:
        return ""
    try:
        name = signal.Signals(code - 128).name
    except ValueError:
        return ""
    note = f", as a process killed by {name} does"
    if name == "SIGKILL":
        note += " (the kernel's out-of-memory killer sends it when memory runs out)"
    return note
