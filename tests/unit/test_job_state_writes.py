"""The two writers of a job's state (on a loaded job, and the engine's one-statement UPDATE) follow the same
rules, and the UPDATE applies only to a job still in the state it was read in. Real SQLite, real services."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from batchai.services import jobs
from batchai.services.context import Ctx
from batchai.states import IllegalTransition, JobState
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Job
from tests.unit import services_world as world

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    database.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with database.session() as session:
        ctx = Ctx(session=session, storage=storage, clock=lambda: NOW)
        world.workspace(ctx)
        world.submit(ctx, "j", tmp_path / "logs")
    yield database
    database.dispose()


def _row(database: Database) -> Job:
    with database.session() as session:
        return session.scalars(select(Job)).one()


def test_the_update_applies_only_to_a_job_still_in_the_state_it_was_read_in(db: Database) -> None:
    queued = _row(db)
    with db.session() as session:
        assert jobs.switch_state_row(session.connection(), queued.id, queued, JobState.RUNNING, NOW, attempts=1)
    running = _row(db)
    assert (running.execution_state, running.start_time, running.attempts) == ("running", NOW, 1)
    assert running.version == queued.version + 1
    with db.session() as session:  # read while queued: somebody else moved it on since
        assert not jobs.switch_state_row(session.connection(), queued.id, queued, JobState.FAILED, NOW)
    assert _row(db).execution_state == "running"


def test_ending_stamps_the_end_and_keeps_errors(db: Database) -> None:
    job = _row(db)
    later = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
    error = {"code": "JobFailed", "message": "exit 3", "details": []}
    with db.session() as session:
        connection = session.connection()
        assert jobs.switch_state_row(connection, job.id, job, JobState.RUNNING, NOW)
    job = _row(db)
    with db.session() as session:
        assert jobs.switch_state_row(
            session.connection(), job.id, job, JobState.FAILED, later, error=error, exit_code=3
        )
    failed = _row(db)
    assert (failed.start_time, failed.end_time, failed.exit_code, failed.errors) == (NOW, later, 3, [error])


def test_an_illegal_transition_writes_nothing(db: Database) -> None:
    job = _row(db)
    with pytest.raises(IllegalTransition), db.session() as session:
        jobs.switch_state_row(session.connection(), job.id, job, JobState.SUCCEEDED, NOW)
    assert _row(db).execution_state == "queued"


def test_both_writers_write_the_same_columns() -> None:
    values = jobs.transition(JobState.RUNNING, JobState.SUCCEEDED, NOW, start_time=NOW, errors=[], exit_code=0)
    assert values == {"execution_state": "succeeded", "execution_state_time": NOW, "end_time": NOW, "exit_code": 0}
    started = jobs.transition(JobState.QUEUED, JobState.RUNNING, NOW, start_time=None, errors=[])
    assert started["start_time"] == NOW
    requeued = jobs.transition(JobState.RUNNING, JobState.QUEUED, NOW, start_time=NOW, errors=[])
    assert "start_time" not in requeued and "end_time" not in requeued
