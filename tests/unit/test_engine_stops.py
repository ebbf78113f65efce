"""The engine's helper threads that stop a task's processes: they hold plain values, not the pass's ORM objects,
which expire when the pass's transaction ends (a pass that rolls back, after a conflict with the API, included).
The real engine, SQLite and local provider (with its launcher process)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import psutil
from sqlalchemy import select, update

from batchai.providers.local import LocalProvider
from batchai.scheduler.engine import Engine
from batchai.scheduler.settings import EngineSettings
from batchai.services import clusters
from batchai.services.context import Ctx, utc_now
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Task
from tests.conftest import wait_for
from tests.unit import services_world as world


class RolledBack(Exception):
    pass


def test_a_stop_begun_in_a_pass_that_rolls_back_still_ends(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx)
        world.submit(ctx, "stubborn", tmp_path / "logs", command="bash -c 'trap \"\" TERM; sleep 60'")
    provider = LocalProvider(tmp_path / "nodes", tmp_path / "run", gpus=())
    settings = EngineSettings(home=tmp_path, default_python=sys.executable, grace_seconds=1)
    engine = Engine(db, storage, provider, settings, utc_now)
    engine.start()
    try:

        def running_pid() -> int | None:
            with db.session() as session:
                task = session.scalars(select(Task).join(Job).filter(Job.execution_state == "running")).first()
                return task.pid if task is not None and task.pid else None

        pid = wait_for(running_pid, timeout=60, message="the job to run")
        engine.shutdown()  # no pass runs from here: the stop below is the only one
        with contextlib.suppress(RolledBack), db.session() as session:
            engine._stop_task_async(session.scalars(select(Task)).one())  # (TERM is ignored: it takes a second)
            raise RolledBack  # the pass's transaction ends without committing; its objects expire
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        # The thread let go of the task: a later pass would look at it (and settle the job) again.
        wait_for(lambda: not engine._stopping, timeout=10, message="the stop thread to let go of the task")
    finally:
        engine.shutdown()
        provider.close()
        db.dispose()


def test_a_job_whose_cluster_was_deleted_as_it_was_created_does_not_wait_for_good(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx)
        world.submit(ctx, "orphan", tmp_path / "logs")
        # What the race leaves (the cluster's delete went between the job's checks and its insert): a queued
        # job whose cluster is gone.
        session.execute(update(Job).values(cluster_id=None))
    provider = LocalProvider(tmp_path / "nodes", tmp_path / "run", gpus=())
    engine = Engine(db, storage, provider, EngineSettings(home=tmp_path, default_python=sys.executable), utc_now)
    engine.start()
    try:

        def ended() -> Job | None:
            with db.session() as session:
                job = session.scalars(select(Job)).one()
            return job if job.execution_state == "failed" else None

        job = wait_for(ended, timeout=30, message="the orphaned job to fail")
        assert [e["code"] for e in job.errors] == ["ClusterDeleted"]
    finally:
        engine.shutdown()
        provider.close()
        db.dispose()


def test_a_cluster_delete_the_server_stopped_in_is_finished_when_it_starts(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx, cluster_names=("gone", "kept"))
        world.submit(ctx, "waiting", tmp_path / "logs", cluster="gone")
        # What a server killed halfway through `DELETE cluster` leaves: the cluster marked, its jobs asked to stop.
        gone = session.scalars(select(Cluster).filter(Cluster.name == "gone")).one()
        clusters.stop_for_delete(ctx, gone)
    provider = LocalProvider(tmp_path / "nodes", tmp_path / "run", gpus=())
    engine = Engine(db, storage, provider, EngineSettings(home=tmp_path, default_python=sys.executable), utc_now)
    engine.start()
    try:

        def names() -> list[str]:
            with db.session() as session:
                return list(session.scalars(select(Cluster.name)))

        wait_for(lambda: names() == ["kept"], timeout=30, message="the half-deleted cluster to go")
        with db.session() as session:
            job = session.scalars(select(Job)).one()
            assert (job.execution_state, [e["code"] for e in job.errors]) == ("failed", ["ClusterDeleted"])
    finally:
        engine.shutdown()
        provider.close()
        db.dispose()
