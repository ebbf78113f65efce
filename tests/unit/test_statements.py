"""The engine's hot statements on real SQLite with the migrated schema: the head of a cluster's line comes in
the scheduler's order and straight from an index, however long the cluster's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.dialects import sqlite

from batchai.scheduler import statements
from batchai.services.context import Ctx
from batchai.storage.local import LocalStorage
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Node
from tests.unit import services_world as world

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _submit(db: Database, tmp_path: Path, jobs_by_cluster: dict[str, list[tuple[str, str]]]) -> None:
    """Jobs (name, priority) per cluster, created one second apart in the order given."""
    storage = LocalStorage(tmp_path / "storage")
    clock = [START]
    with db.session() as session:
        ctx = Ctx(session=session, storage=storage, clock=lambda: clock[0])
        world.workspace(ctx, tuple(jobs_by_cluster))
        for cluster, named in jobs_by_cluster.items():
            for name, priority in named:
                clock[0] += timedelta(seconds=1)
                world.submit(ctx, name, tmp_path / "logs", cluster=cluster, schedulingPriority=priority)


def _head(db: Database, cluster: str, window: int = 10) -> list[str]:
    with db.session() as session:
        connection = session.connection()
        cid = session.scalar(select(Cluster.id).where(Cluster.key == cluster))
        ids = [row.id for row in statements.QUEUE_HEAD.run(connection, {"cid": cid, "window": window})]
        names = {job.id: job.name for job in session.scalars(select(Job).where(Job.id.in_(ids)))}
        return [names[i] for i in ids]


def test_the_head_of_a_line_is_by_priority_then_first_come(db: Database, tmp_path: Path) -> None:
    _submit(
        db,
        tmp_path,
        {
            "a": [("a1", "normal"), ("a2", "low"), ("a3", "high"), ("a4", "normal"), ("a5", "high"), ("a6", "normal")],
            "b": [("b1", "high")],
        },
    )
    with db.session() as session:  # a job that has started has left the line
        session.execute(update(Job).where(Job.key == "a4").values(execution_state="running"))
    assert _head(db, "a") == ["a3", "a5", "a1", "a6", "a2"]
    assert _head(db, "a", window=2) == ["a3", "a5"]
    assert _head(db, "b") == ["b1"]


def test_the_head_of_a_line_is_read_from_an_index_without_sorting(db: Database) -> None:
    sql = str(statements.QUEUE_HEAD.statement.compile(dialect=sqlite.dialect()))
    with db.engine.connect() as connection:
        plan = " | ".join(
            row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("queued", 1, 8, 0))
        )
    # Before ix_jobs_line: "SEARCH jobs USING INDEX ix_jobs_cluster_id (cluster_id=?) | USE TEMP B-TREE FOR
    # ORDER BY", every job the cluster ever had read and the queued ones sorted on each pass.
    assert "ix_jobs_line (cluster_id=? AND execution_state=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def _node_rows(db: Database, tmp_path: Path) -> tuple[int, int, int]:
    """A cluster's node running job a1 with a2 staged on it; returns (node id, a1's id, a2's id)."""
    _submit(db, tmp_path, {"a": [("a1", "normal"), ("a2", "normal")]})
    with db.session() as session:
        cid = session.scalar(select(Cluster.id).where(Cluster.key == "a"))
        a1, a2 = (session.scalars(select(Job.id).where(Job.name == n)).one() for n in ("a1", "a2"))
        node = Node(cluster_id=cid, name="node-0", index=0, state="running", state_time=START, job_id=a1)
        session.add(node)
        session.flush()
        statements.STAGE_ON_NODE.run(session.connection(), {"nid": node.id, "ahead": a1, "jid": a2})
        return node.id, a1, a2


def _node(db: Database, node_id: int) -> tuple[str, int | None, int | None]:
    with db.session() as session:
        node = session.get_one(Node, node_id)
        return node.state, node.job_id, node.next_job_id


def test_a_job_s_end_hands_its_node_to_the_job_staged_there(db: Database, tmp_path: Path) -> None:
    node, a1, a2 = _node_rows(db, tmp_path)
    assert _node(db, node) == ("running", a1, a2)
    with db.session() as session:  # a1 ends: a2 has the node (still running), nothing is staged
        statements.FREE_NODES_OF_JOB.run(session.connection(), {"jid": a1, "now": START})
    assert _node(db, node) == ("running", a2, None)
    with db.session() as session:  # a2 ends: the node is idle
        statements.FREE_NODES_OF_JOB.run(session.connection(), {"jid": a2, "now": START})
    assert _node(db, node) == ("idle", None, None)


def test_a_staged_job_that_ended_first_lets_go_of_its_place(db: Database, tmp_path: Path) -> None:
    """Settled out of order (the staged job's end before that of the job ahead): the node is not left to it."""
    node, a1, a2 = _node_rows(db, tmp_path)
    with db.session() as session:
        statements.FREE_NODES_OF_JOB.run(session.connection(), {"jid": a2, "now": START})
    assert _node(db, node) == ("running", a1, None)
    with db.session() as session:
        statements.FREE_NODES_OF_JOB.run(session.connection(), {"jid": a1, "now": START})
    assert _node(db, node) == ("idle", None, None)


def test_a_staged_job_whose_job_ahead_went_unsettled_takes_its_node(db: Database, tmp_path: Path) -> None:
    node, _a1, a2 = _node_rows(db, tmp_path)
    with db.session() as session:  # (as when the job ahead's row was deleted)
        session.execute(update(Node).where(Node.id == node).values(job_id=None))
        statements.PROMOTE_NEXT.run(session.connection(), {"jid": a2, "now": START})
    assert _node(db, node) == ("running", a2, None)
