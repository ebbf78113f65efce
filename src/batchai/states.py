"""Job execution states and the transitions allowed between them; terminal states are never left."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    # Queued, with its node chosen: its process starts the moment the job running there ends (the node's
    # launcher starts it, see ``NodeProvider.follow``). Shown as queued.
    STAGED = "staged"
    RUNNING = "running"
    TERMINATING = "terminating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)

    @property
    def shown(self) -> str:
        """The state on the wire (Batch AI's ``executionState``)."""
        return JobState.QUEUED.value if self is JobState.STAGED else self.value


ALLOWED: dict[JobState, frozenset[JobState]] = {
    # queued -> queued is a requeue after a lost node: it refreshes the transition time.
    JobState.QUEUED: frozenset({JobState.STAGED, JobState.RUNNING, JobState.TERMINATING, JobState.FAILED}),
    # staged -> queued: its start was called off (its node or cluster changed).
    JobState.STAGED: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.TERMINATING, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.QUEUED, JobState.TERMINATING, JobState.SUCCEEDED, JobState.FAILED}),
    JobState.TERMINATING: frozenset({JobState.FAILED, JobState.SUCCEEDED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    """A bug or a race: somebody tried to move a job along an edge the table does not have."""


def check_transition(current: JobState, new: JobState) -> None:
    if new not in ALLOWED[current]:
        raise IllegalTransition(f"job cannot go from {current} to {new}")


PRIORITY_RANK = {"low": -1, "normal": 0, "high": 1}
