"""The database handle: engine, sessions, and schema upgrades through Alembic at start."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from batchai.private_files import private_file, try_lock

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock a server holds on its database ("batchai" in ASCII).
ADVISORY_LOCK = 0x62617463686169


class DatabaseInUse(Exception):
    """Another batchai server runs on the database."""


@contextmanager
def claim(url: str) -> Iterator[None]:
    """Hold the database for one server while it runs: two servers on one database (two homes given the same
    ``--database-url``) would start the same jobs twice. PostgreSQL: an advisory lock on a connection kept
    open; SQLite: a lock on a file beside the database. Raises DatabaseInUse if another server holds it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            yield
            return
        fd = try_lock(Path(f"{parsed.database}.server-lock"))
        if fd is None:
            raise DatabaseInUse(f"another batchai server runs on the database {parsed.database}")
        try:
            yield
        finally:
            os.close(fd)
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK}).scalar():
                shown = parsed.render_as_string(hide_password=True)
                raise DatabaseInUse(f"another batchai server runs on the database {shown}")
            connection.commit()  # (a session's lock outlives the transaction; the connection stays open)
            yield
    finally:
        engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _private_sqlite_files(url: str) -> None:
    """A SQLite database (and its journal, which SQLite creates with the database's mode) readable by its owner
    only: it holds the jobs' secrets and the storage accounts' keys."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:") or not Path(path).parent.is_dir():
        return  # (SQLite says what is wrong with a path it cannot open)
    with contextlib.suppress(OSError):  # not ours to change: left as it is
        private_file(Path(path))
        for journal in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if journal.exists():
                os.chmod(journal, 0o600)


class Database:
    """One engine per server. ``session()`` is a unit of work: committed on success, rolled back on error."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False}
            _private_sqlite_files(url)
        else:
            kwargs["pool_pre_ping"] = True  # survive a database server restart
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates it on a new database)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self, snapshot: bool = False) -> Iterator[Session]:
        """With ``snapshot``, every read in the block sees the database as of its first read (a cluster and
        its node counts from the same moment); without, each statement sees the latest commit (SQLite
        begins a transaction only at the first write, PostgreSQL reads committed)."""
        with self._sessions() as session, session.begin():
            if snapshot:
                if self.engine.dialect.name == "sqlite":
                    session.execute(text("BEGIN"))
                else:
                    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
