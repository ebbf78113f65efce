"""The engine ending what went half done: a stop begun in a pass that rolled back, a job created while its cluster
was being deleted, a cluster delete a stopped server left. The real engine, SQLite and local provider (with its
launcher process); the half-done states are written as the races and crashes leave them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from batchai.providers.local import LocalProvider
from batchai.scheduler.engine import Engine
from batchai.scheduler.settings import EngineSettings
from batchai.services import clusters
from batchai.services.context import Ctx, utc_now
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Task
from tests.conftest import process_gone, wait_for
from tests.unit import services_world as world


@dataclass
class World:
    db: Database
    storage: LocalStorage
    tmp: Path

    def make(self, build: Callable[[Ctx], None]) -> None:
        """Build the world through the services, in one transaction."""
        with self.db.session() as session:
            build(Ctx(session=session, storage=self.storage))

    @contextlib.contextmanager
    def engine(self, tick_seconds: float = 1.0, patch: Callable[[Engine], None] = lambda _: None) -> Iterator[Engine]:
        """A started engine (``patch`` is applied before it starts)."""
        provider = LocalProvider(self.tmp / "nodes", self.tmp / "run", gpus=())
        settings = EngineSettings(
            home=self.tmp, default_python=sys.executable, grace_seconds=1, tick_seconds=tick_seconds
        )
        engine = Engine(self.db, self.storage, provider, settings, utc_now)
        patch(engine)
        engine.start()
        try:
            yield engine
        finally:
            engine.shutdown()
            provider.close()

    def job(self) -> Job:
        with self.db.session() as session:
            return session.scalars(select(Job)).one()


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    yield World(db, LocalStorage(tmp_path / "storage"), tmp_path)
    db.dispose()


class RolledBack(Exception):
    pass


def test_a_stop_begun_in_a_pass_that_rolls_back_still_ends(w: World) -> None:
    def stubborn(ctx: Ctx) -> None:
        world.workspace(ctx)
        # TERM is ignored: stopping it takes the grace period.
        world.submit(ctx, "stubborn", w.tmp / "logs", command="bash -c 'trap \"\" TERM; sleep 60'")

    w.make(stubborn)
    with w.engine() as engine:

        def running_pid() -> int | None:
            with w.db.session() as session:
                task = session.scalars(select(Task).join(Job).filter(Job.execution_state == "running")).first()
                return task.pid if task is not None and task.pid else None

        pid = wait_for(running_pid, timeout=60, message="the job to run")
        engine.shutdown()  # no pass runs from here: the stop below is the only one
        with contextlib.suppress(RolledBack), w.db.session() as session:
            engine._stop_task_async(session.scalars(select(Task)).one())
            raise RolledBack  # the pass's transaction ends without committing; its objects expire
        wait_for(lambda: process_gone(pid))
        # The thread let go of the task: a later pass would look at it (and settle the job) again.
        wait_for(lambda: not engine._stopping, timeout=10, message="the stop thread to let go of the task")


def test_a_job_whose_cluster_was_deleted_as_it_was_created_does_not_wait_for_good(w: World) -> None:
    def orphan(ctx: Ctx) -> None:
        world.workspace(ctx)
        world.submit(ctx, "orphan", w.tmp / "logs")
        # What the race leaves (the cluster's delete went between the job's checks and its insert): a queued
        # job whose cluster is gone.
        ctx.session.execute(update(Job).values(cluster_id=None))

    w.make(orphan)
    with w.engine():
        job = wait_for(lambda: (j := w.job()).execution_state == "failed" and j, timeout=30, message="the job to fail")
    assert [e["code"] for e in job.errors] == ["ClusterDeleted"]


def test_a_cluster_delete_the_server_stopped_in_is_finished_when_it_starts(w: World) -> None:
    def half_deleted(ctx: Ctx) -> None:
        world.workspace(ctx, cluster_names=("gone", "kept"))
        world.submit(ctx, "waiting", w.tmp / "logs", cluster="gone")
        # What a server killed halfway through `DELETE cluster` leaves: the cluster marked, its jobs asked to stop.
        clusters.stop_for_delete(ctx, ctx.session.scalars(select(Cluster).filter(Cluster.name == "gone")).one())

    w.make(half_deleted)
    with w.engine():

        def names() -> list[str]:
            with w.db.session() as session:
                return list(session.scalars(select(Cluster.name)))

        wait_for(lambda: names() == ["kept"], timeout=30, message="the half-deleted cluster to go")
    job = w.job()
    assert (job.execution_state, [e["code"] for e in job.errors]) == ("failed", ["ClusterDeleted"])


def test_passes_that_keep_failing_log_their_traceback_once(
    w: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that is down fails every pass: the log gets one traceback, not one a second."""
    w.make(world.workspace)
    failures = {"left": 50}

    def failing_first(engine: Engine) -> None:
        real_step = engine.step

        def step() -> float:
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("the database is down")
            return real_step()

        monkeypatch.setattr(engine, "step", step)

    caplog.set_level("INFO", logger="batchai.engine")
    with w.engine(tick_seconds=0.01, patch=failing_first):
        wait_for(lambda: "engine passes work again, after 50 that failed" in caplog.text, timeout=30)
    failed = [r for r in caplog.records if "engine pass" in r.getMessage() and r.levelname == "ERROR"]
    assert len(failed) == 1 and failed[0].exc_info is not None  # (a line a minute after it: none here)
