"""A job of a higher priority queued while a lower one is being staged (its state is already ``staged`` in the
database, its start not yet arranged with the launcher) still takes that job's place. The real engine, SQLite
and local provider (with its launcher process); only the provider's ``follow`` is held back until then."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from batchai.providers.base import ProcessSpec
from batchai.providers.local import LocalProvider
from batchai.runtime.launcher import Follower
from batchai.runtime.supervisor import Handle
from batchai.scheduler.engine import Engine
from batchai.scheduler.settings import EngineSettings
from batchai.services.context import Ctx, utc_now
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Job
from tests.conftest import assert_nothing_left, leftovers, wait_for
from tests.unit import services_world as world


class HeldFollows(LocalProvider):
    """The local provider whose ``follow`` waits for ``release`` (``entered`` is set meanwhile)."""

    def __init__(self, root: Path, run_dir: Path) -> None:
        super().__init__(root, run_dir, gpus=())
        self.entered = threading.Event()
        self.release = threading.Event()

    def follow(self, after: Handle, spec: ProcessSpec) -> Follower | None:
        self.entered.set()
        assert self.release.wait(30)
        return super().follow(after, spec)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, Database, LocalStorage, HeldFollows]]:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with db.session() as session:
        world.workspace(Ctx(session=session, storage=storage))
    provider = HeldFollows(tmp_path / "nodes", tmp_path / "run")
    engine = Engine(
        db, storage, provider, EngineSettings(home=tmp_path, default_python=sys.executable, grace_seconds=2), utc_now
    )
    engine.start()
    try:
        yield engine, db, storage, provider
    finally:
        provider.release.set()
        (tmp_path / "gate").touch()  # the test's blocker ends, even if the test failed before letting it
        engine.shutdown()
        provider.close()
        db.dispose()
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not leftovers(tmp_path), timeout=30, message="the jobs and the launcher to end")
        assert_nothing_left(tmp_path)


def _submit(engine: Engine, db: Database, storage: LocalStorage, logs: Path, name: str, **props: Any) -> None:
    """As the API creates a job: in a unit of work, then what it does after the commit (``job_queued``)."""
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage, clock=utc_now, runtime=engine)
        world.submit(ctx, name, logs, **props)
    for action in ctx.after_commit:
        action()
    engine.wake(queued=True)


def _states(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {job.name: job.execution_state for job in session.scalars(select(Job))}


def test_a_higher_priority_queued_while_a_job_is_being_staged_takes_its_place(
    engine: tuple[Engine, Database, LocalStorage, HeldFollows], tmp_path: Path
) -> None:
    runtime, db, storage, provider = engine
    gate, marks, logs = tmp_path / "gate", tmp_path / "marks", tmp_path / "logs"
    _submit(runtime, db, storage, logs, "blocker", command=f"while [ ! -e {gate} ]; do sleep 0.05; done")
    wait_for(lambda: _states(db)["blocker"] == "running", message="the blocker to run")
    _submit(runtime, db, storage, logs, "low", command=f"echo low >> {marks}", schedulingPriority="low")
    assert provider.entered.wait(30)  # low is being staged: the launcher is not asked yet
    assert _states(db)["low"] == "staged"
    _submit(runtime, db, storage, logs, "high", command=f"echo high >> {marks}", schedulingPriority="high")
    provider.release.set()
    wait_for(lambda: _states(db)["high"] == "staged", message="the high job to take the low one's place")
    assert _states(db)["low"] == "queued"
    gate.touch()
    wait_for(lambda: _states(db)["low"] == "succeeded", message="both jobs to run")
    assert marks.read_text().split() == ["high", "low"]
