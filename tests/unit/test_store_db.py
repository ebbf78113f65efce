"""``Database.session(snapshot=True)``: a read-only unit of work sees the database as of its first read, so that
what the API renders from several rows (a cluster and its node counts) belongs to one moment."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from batchai.store.db import Database


def reads_around_a_commit(database: Database, snapshot: bool) -> tuple[int, int]:
    """What one unit of work reads of a counter before and after another commits a change to it."""
    with database.session() as session:
        session.execute(text("DROP TABLE IF EXISTS snapshot_probe"))
        session.execute(text("CREATE TABLE snapshot_probe (n INTEGER NOT NULL)"))
        session.execute(text("INSERT INTO snapshot_probe (n) VALUES (1)"))
    try:
        with database.session(snapshot=snapshot) as reader:
            before = reader.scalar(text("SELECT n FROM snapshot_probe"))
            with database.session() as writer:
                writer.execute(text("UPDATE snapshot_probe SET n = 2"))
            after = reader.scalar(text("SELECT n FROM snapshot_probe"))
    finally:
        with database.session() as session:
            session.execute(text("DROP TABLE snapshot_probe"))
    return int(before), int(after)


@pytest.mark.parametrize("snapshot,seen", [(True, (1, 1)), (False, (1, 2))])
def test_a_snapshot_session_reads_one_moment_on_sqlite(tmp_path: Path, snapshot: bool, seen: tuple[int, int]) -> None:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert reads_around_a_commit(database, snapshot) == seen
    finally:
        database.dispose()
