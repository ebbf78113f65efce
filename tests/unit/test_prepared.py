"""``store.prepared`` on real SQLite with the migrated schema: every statement of the engine's hot path reads and
writes exactly what SQLAlchemy's own execution of it does (the same rows, the same types, the same changes to
every table), raises SQLAlchemy's errors, and runs on the driver's cursor where it says it does.
``tests/integration/test_postgres.py`` runs the same comparison on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, select, update

from batchai.scheduler import statements
from batchai.services import jobs as job_service
from batchai.services.context import Ctx
from batchai.states import JobState
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.prepared import Prepared
from batchai.store.tables import Base, Cluster, Job, Node, Task
from tests.unit import services_world as world

START = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
# A statement with an IN list given at each run goes through SQLAlchemy's execution.
THROUGH_SQLALCHEMY = {"jobs_in"}


def populate(db: Database, logs: Path, storage: Path) -> dict[str, int]:
    """Two clusters; a running job, another whose task has ended, a staged job, a queued one, an idle node; the ids
    tests refer to."""
    with db.session() as session:
        ctx = Ctx(session=session, storage=LocalStorage(storage), clock=lambda: START)
        world.workspace(ctx, ("a", "b"))
        for name in ("run", "staged", "queued", "ending"):
            world.submit(ctx, name, logs, cluster="a")
        session.flush()
        ids = {job.name: job.id for job in session.scalars(select(Job))}
        cluster = session.scalars(select(Cluster).where(Cluster.key == "a")).one()
        session.execute(
            update(Job)
            .where(Job.id.in_([ids["run"], ids["ending"]]))
            .values(execution_state=JobState.RUNNING, start_time=START, errors=[{"code": "x", "message": "é"}])
        )
        session.execute(update(Job).where(Job.id == ids["staged"]).values(execution_state=JobState.STAGED))
        node = Node(
            cluster_id=cluster.id, name="n0", index=0, state="running", state_time=START, job_id=ids["run"], info={}
        )
        idle = Node(cluster_id=cluster.id, name="n1", index=1, state="idle", state_time=START, info={"k": [1, 2]})
        # (a node whose job ahead went without being settled, the staged job waiting for it)
        waiting = Node(
            cluster_id=cluster.id, name="n2", index=2, state="running", state_time=START, next_job_id=ids["staged"]
        )
        session.add_all([node, idle, waiting])
        session.flush()
        info = {"pid": 10, "start": 1.5, "exit_file": "/x/task-0-1.exit", "stderr": "/x/stderr.txt"}
        first = Task(job_id=ids["run"], node_id=node.id, index=0, pid=10, pid_start=1.5, started_at=START, info=info)
        ended = Task(
            job_id=ids["ending"], node_id=None, index=0, started_at=START, finished_at=START, exit_code=3, info={}
        )
        session.add_all([first, ended])
        session.flush()
        return {**ids, "node": node.id, "idle": idle.id, "cluster": cluster.id, "task": first.id}


def cases(ids: dict[str, int]) -> list[tuple[str, Prepared, Any]]:
    """(name, statement, parameters) for every statement of ``batchai.scheduler.statements``, a change of state and a
    statement with an IN list."""
    later = START + timedelta(seconds=7, microseconds=5)
    params: dict[str, Any] = {
        "ACTIVE_TASKS": None,
        "JOB_SPEC": {"jid": ids["run"]},
        "TASK_ENDED": [{"tid": ids["task"], "code": 0, "at": later}],
        "FREE_NODES_OF_JOB": {"jid": ids["run"], "now": later},
        "FREE_NODES": None,
        "STAGEABLE_NODES": None,
        "PROMOTE_NEXT": {"jid": ids["staged"], "now": later},
        "UNSTAGE": {"jid": ids["staged"]},
        "STAGE_ON_NODE": {"nid": ids["node"], "ahead": ids["run"], "jid": ids["queued"]},
        "QUEUE_HEAD": {"cid": ids["cluster"], "window": 5},
        "SCHEDULABLE_CLUSTER": {"cid": ids["cluster"]},
        "JOB_TO_START": {"jid": ids["queued"]},
        "SET_SKIPS": [{"jid": ids["queued"], "count": 2}, {"jid": ids["staged"], "count": 1}],
        "TAKE_NODE": [{"nid": ids["idle"], "jid": ids["queued"], "now": later}],
        "ADD_TASK": [{"jid": ids["queued"], "nid": ids["idle"], "rank": 0, "role": {"role": "master", "n": [1]}}],
        "TASK_STARTED": [
            {"jid": ids["run"], "rank": 0, "process": 11, "process_start": 2.25, "at": later, "details": {"a": "ü"}}
        ],
        "DELETE_TASKS": {"jid": ids["run"]},
    }
    found = {name for name in dir(statements) if isinstance(getattr(statements, name), Prepared)}
    assert found == set(params), "a statement without a case here"
    switch = Prepared(
        update(Job)
        .where(Job.id == sa.bindparam("_id"), Job.execution_state == sa.bindparam("_current"))
        .values(execution_state=sa.bindparam("_state"), errors=sa.bindparam("_errors"), end_time=sa.bindparam("_at"))
    )
    change = {"_id": ids["run"], "_current": "running", "_state": JobState.FAILED, "_errors": [{"c": 1}], "_at": later}
    jobs_in = Prepared(select(Job.id, Job.name, Job.spec).where(Job.id.in_(sa.bindparam("ids", expanding=True))))
    return [
        *((name, getattr(statements, name), params[name]) for name in sorted(params)),
        ("switch", switch, change),
        ("jobs_in", jobs_in, {"ids": [ids["run"], ids["queued"]]}),
    ]


def tables(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as SQLAlchemy reads them, in the order of their keys but without them (a rolled
    back INSERT still uses up a PostgreSQL sequence's number)."""
    return {
        name: [
            tuple(row)
            for row in connection.execute(
                select(*(c for c in table.columns if not c.primary_key)).order_by(*table.primary_key.columns)
            )
        ]
        for name, table in Base.metadata.tables.items()
    }


def run_both_ways(engine: sa.Engine, ids: dict[str, int]) -> None:
    """Each case, in a transaction rolled back after: through ``Prepared.run`` and through ``Connection.execute``,
    the rows, the rowcount (where SQLAlchemy knows it: not for a list of INSERTs on PostgreSQL) and the tables after
    must be the same."""
    before = _tables_now(engine)
    for name, statement, params in cases(ids):
        seen = []
        for way in ("prepared", "sqlalchemy"):
            with engine.connect() as connection, connection.begin() as transaction:
                if way == "prepared":
                    result: Any = statement.run(connection, params)
                else:
                    result = connection.execute(statement.statement, params)
                rows = (
                    [(tuple(row), row._asdict()) for row in result] if way == "prepared" or result.returns_rows else []
                )
                seen.append((rows, result.rowcount, tables(connection)))
                transaction.rollback()
        (rows, count, after), (expected_rows, expected_count, expected_after) = seen
        assert (rows, after) == (expected_rows, expected_after), name
        assert count == expected_count or expected_count == -1, name
        assert rows or after != before, f"{name}: the case reads or changes nothing"


def _tables_now(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return tables(connection)


def test_every_hot_statement_does_what_sqlalchemy_s_execution_does(db: Database, tmp_path: Path) -> None:
    ids = populate(db, tmp_path / "logs", tmp_path / "storage")
    run_both_ways(db.engine, ids)


def test_the_statements_run_on_the_driver_s_cursor(db: Database, tmp_path: Path) -> None:
    """Only a statement with an IN list given at run time goes through SQLAlchemy's execution."""
    ids = populate(db, tmp_path / "logs", tmp_path / "storage")
    executed: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: executed.append(args[2]))
    for name, statement, params in cases(ids):
        with db.engine.connect() as connection, connection.begin() as transaction:
            executed.clear()
            statement.run(connection, params)
            assert bool(executed) == (name in THROUGH_SQLALCHEMY), name
            transaction.rollback()


def test_types_come_back_as_sqlalchemy_gives_them(db: Database, tmp_path: Path) -> None:
    ids = populate(db, tmp_path / "logs", tmp_path / "storage")
    with db.session() as session:
        rows = statements.ACTIVE_TASKS.run(session.connection()).all()
    assert [(row.job_id, row.rank, row.exit_code) for row in rows] == [(ids["run"], 0, None), (ids["ending"], 0, 3)]
    assert rows[0].start_time == START and rows[0].start_time.tzinfo is UTC
    assert rows[0].errors == [{"code": "x", "message": "é"}]
    assert rows[0].info["exit_file"] == "/x/task-0-1.exit"
    assert rows[1].finished_at == START


def test_a_change_of_state_through_the_prepared_path_writes_its_columns(db: Database, tmp_path: Path) -> None:
    ids = populate(db, tmp_path / "logs", tmp_path / "storage")
    later = START + timedelta(minutes=1)
    with db.session() as session:
        row = statements.JOB_TO_START.run(session.connection(), {"jid": ids["run"]}).first()
        error = {"code": "E", "message": "m"}
        assert job_service.switch_state_row(session.connection(), ids["run"], row, JobState.FAILED, later, error=error)
        assert not job_service.switch_state_row(session.connection(), ids["run"], row, JobState.FAILED, later)
    with db.session() as session:
        job = session.get_one(Job, ids["run"])
        assert (job.execution_state, job.end_time, job.version) == (JobState.FAILED, later, 2)
        assert job.errors == [{"code": "x", "message": "é"}, error]


def test_a_driver_error_is_sqlalchemy_s(db: Database, tmp_path: Path) -> None:
    """A task of a job that does not exist breaks a foreign key: SQLAlchemy's IntegrityError, nothing written."""
    populate(db, tmp_path / "logs", tmp_path / "storage")
    with pytest.raises(sa.exc.IntegrityError), db.session() as session:
        statements.ADD_TASK.run(session.connection(), [{"jid": 999, "nid": None, "rank": 0, "role": {}}])
    with db.session() as session:
        assert session.scalar(select(sa.func.count()).select_from(Task)) == 2
