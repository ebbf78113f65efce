"""The engine when its node provider fails to start a job in a way no provider documents (Ray losing a node's
agent twice in a row): the job is requeued with the reason in its execution log, and fails with it once its
starts are used up. The real engine, SQLite and local provider (with its launcher process); only the
provider's start is made to fail."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from batchai.providers.base import ProviderUnavailable
from batchai.providers.local import LocalProvider
from batchai.runtime.supervisor import Handle, Outcome
from batchai.scheduler.engine import Engine
from batchai.scheduler.settings import EngineSettings
from batchai.services.context import Ctx, utc_now
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job
from tests.conftest import wait_for
from tests.unit import services_world as world


class FailingStarts(LocalProvider):
    """The local provider whose first ``fails`` starts raise what no provider's contract names."""

    def __init__(self, root: Path, run_dir: Path, fails: int) -> None:
        super().__init__(root, run_dir, gpus=())
        self.fails = fails

    def start(self, *args: Any, **kwargs: Any) -> Handle:
        if self.fails > 0:
            self.fails -= 1
            raise RuntimeError("the node's agent was lost")
        return super().start(*args, **kwargs)


@pytest.fixture
def one_job(tmp_path: Path) -> Iterator[tuple[Database, LocalStorage]]:
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx)
        world.submit(ctx, "j", tmp_path / "logs", command="echo done")
    yield db, storage
    db.dispose()


def _run_until_ended(db: Database, storage: LocalStorage, provider: LocalProvider, home: Path) -> Job:
    engine = Engine(
        db, storage, provider, EngineSettings(home=home, default_python=sys.executable, grace_seconds=2), utc_now
    )
    engine.start()

    def ended() -> Job | None:
        with db.session() as session:
            job = session.scalars(select(Job)).one()
        return job if job.execution_state in ("succeeded", "failed") else None

    try:
        return wait_for(ended, timeout=60, message="the job to end")  # type: ignore[no-any-return]
    finally:
        engine.shutdown()
        provider.close()


def _execution_log(tmp_path: Path) -> str:
    (log,) = (tmp_path / "logs").rglob("execution.log")
    return log.read_text()


def test_a_start_the_provider_fails_is_tried_again_and_says_why(one_job: Any, tmp_path: Path) -> None:
    db, storage = one_job
    provider = FailingStarts(tmp_path / "nodes", tmp_path / "run", fails=1)
    job = _run_until_ended(db, storage, provider, tmp_path)
    assert (job.execution_state, job.attempts, job.exit_code) == ("succeeded", 2, 0)
    log = _execution_log(tmp_path)
    reason = "The node provider failed to start the job's processes: the node's agent was lost"
    assert f"The job could not start: {reason}" in log
    assert f"The job was requeued: {reason}" in log
    assert log.index("requeued") < log.rindex("Job started") < log.index("The job succeeded")


def test_a_job_whose_starts_all_fail_fails_with_the_provider_s_error(one_job: Any, tmp_path: Path) -> None:
    db, storage = one_job
    provider = FailingStarts(tmp_path / "nodes", tmp_path / "run", fails=100)
    job = _run_until_ended(db, storage, provider, tmp_path)
    assert (job.execution_state, job.attempts) == ("failed", 3)  # EngineSettings.max_attempts
    (error,) = job.errors
    assert error["code"] == "ProviderFailed"
    assert error["message"] == "The node provider failed to start the job's processes: the node's agent was lost"
    assert _execution_log(tmp_path).count("The job was requeued") == 2


class OneTaskVanishes(LocalProvider):
    """The local provider, but task 1's process is seen as gone without an exit code (its node's agent died
    with it), while the others run and end as they do."""

    def poll(self, handle: Handle) -> Outcome | None:
        if handle.exit_file.name.startswith("task-1-"):
            return Outcome(None)
        return super().poll(handle)


def test_a_task_that_vanished_fails_the_job_as_lost_not_as_exit_code_none(tmp_path: Path) -> None:
    """Task 1 vanishes while task 0 runs: task 0 is stopped, and once it has ended the job fails saying its
    processes were lost (it used to quote task 1's exit code, None)."""
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    script = tmp_path / "rank.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx)
        settings = {"pythonScriptFilePath": str(script), "processCount": 2}
        world.submit(ctx, "pair", tmp_path / "logs", customToolkitSettings=None, pyTorchSettings=settings)
    try:
        job = _run_until_ended(db, storage, OneTaskVanishes(tmp_path / "nodes", tmp_path / "run"), tmp_path / "home")
    finally:
        db.dispose()
    assert job.execution_state == "failed"
    assert job.errors[0]["code"] == "JobProcessesLost", job.errors


class Unreachable(LocalProvider):
    """The local provider, but while ``down`` is set its processes cannot be polled (a Ray cluster that is down)."""

    down = False

    def poll(self, handle: Handle) -> Outcome | None:
        if self.down:
            raise ProviderUnavailable("the Ray cluster at 127.0.0.1:1 cannot be reached")
        return super().poll(handle)


def test_a_provider_down_while_a_job_runs_is_reported_on_the_clusters(tmp_path: Path) -> None:
    """Polling a running job's processes is what finds the provider down: each cluster says so (it used to be
    only a failed pass in the log), and the job ends as usual once the provider is back."""
    db = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    db.upgrade()
    storage = LocalStorage(tmp_path / "storage")
    gate = tmp_path / "gate"
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage)
        world.workspace(ctx)
        world.submit(ctx, "j", tmp_path / "logs", command=f"while [ ! -e {gate} ]; do sleep 0.05; done")
    provider = Unreachable(tmp_path / "nodes", tmp_path / "run", gpus=())
    settings = EngineSettings(home=tmp_path / "home", default_python=sys.executable, grace_seconds=2)
    engine = Engine(db, storage, provider, settings, utc_now)
    engine.start()

    def state() -> tuple[str, list[str]]:
        with db.session() as session:
            job, cluster = session.scalars(select(Job)).one(), session.scalars(select(Cluster)).one()
            return job.execution_state, [e["code"] for e in cluster.errors or []]

    try:
        wait_for(lambda: state()[0] == "running", message="the job to run")
        provider.down = True
        wait_for(lambda: "ProviderUnavailable" in state()[1], message="the cluster to say its provider is down")
        provider.down = False
        gate.touch()
        wait_for(lambda: state()[0] == "succeeded", message="the job to end")
    finally:
        gate.touch()
        engine.shutdown()
        provider.close()
        db.dispose()
