"""What every service call gets: a database session (one unit of work), the clock and the storage backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import CursorResult, inspect, select, update
from sqlalchemy.orm import Session

from batchai.errors import Conflict, NotFound
from batchai.storage.base import StorageBackend


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NodeTarget:
    """Where a command runs (``Runtime.run_on_node``): a node of a cluster (its stored info), and the job in
    whose working directory it starts, if any."""

    cluster_id: int
    node_name: str
    node_info: dict[str, Any]
    job_id: int | None = None


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when it was stopped at its time limit
    stdout: str
    stderr: str
    timed_out: bool


class Runtime(Protocol):
    """What services ask of the engine that runs jobs (absent when nothing runs them)."""

    def stop_job_now(self, job_id: int) -> None: ...

    def run_on_node(self, target: NodeTarget, command: str, timeout: float) -> CommandResult:
        """Run ``command`` on the node and wait for it, at most ``timeout`` seconds (then it is stopped)."""
        ...

    def release_cluster(self, cluster_id: int, nodes: list[tuple[str, dict[str, Any]]]) -> None: ...

    def release_job(self, cluster_id: int, job_id: int) -> None:
        """After a job is deleted: remove its directory on the cluster's shared storage (idempotent)."""
        ...

    def release_file_server(self, file_server_id: int) -> None:
        """Remove a file server's data (after it is deleted, and before a new one takes its id); idempotent."""
        ...

    def wake(self, clusters: bool = False, queued: bool = False) -> None: ...

    def job_queued(self, cluster_id: int, priority: int) -> None:
        """A job was queued on the cluster with that priority rank (it may outrank a job staged there)."""
        ...


@dataclass
class Ctx:
    session: Session
    storage: StorageBackend
    clock: Callable[[], datetime] = utc_now
    runtime: Runtime | None = None
    # Work that must happen only once the transaction has committed (removing files, waking loops).
    after_commit: list[Callable[[], None]] = field(default_factory=list)


T = TypeVar("T")


def find(session: Session, model: type[T], name: str, **parent: object) -> T | None:
    """The row of ``model`` named ``name`` (case-insensitively) under ``parent``, or None."""
    query = select(model).filter_by(key=name.lower(), **parent)
    return session.scalars(query).first()


def find_to_delete(session: Session, model: type[T], name: str, **parent: object) -> T | None:
    """``find`` for a delete: the row once this transaction holds it (``claim``), or None if there is none, or
    none any more: a concurrent delete took it first (that request answers 200, this one 204, as ARM's deletes
    of what is gone do)."""
    row = find(session, model, name, **parent)
    return row if row is not None and claim(session, row) else None


def claim(session: Session, row: object) -> bool:
    """Hold ``row`` for this transaction (a write that changes nothing and waits for any other writer); False
    (and the row let go) when it is gone by then."""
    state = inspect(row)
    table = state.mapper.local_table
    key = state.mapper.primary_key_from_instance(row)[0]
    claimed = session.execute(update(table).where(table.c.id == key).values(id=table.c.id))
    if cast(CursorResult[Any], claimed).rowcount == 0:
        session.expunge(row)
        return False
    return True


# ``provisioning_state`` of a resource whose delete has begun (its jobs asked to stop) and not yet ended.
DELETING = "deleting"


class Deletable(Protocol):
    name: str
    provisioning_state: str
    provisioning_state_time: datetime


def mark_deleting(ctx: Ctx, row: Deletable) -> None:
    """The first step of a delete: the resource shows ``deleting`` until it is gone (and, should the server
    stop meanwhile, the engine finishes the delete: ``services.deletes``)."""
    if row.provisioning_state != DELETING:
        row.provisioning_state = DELETING
        row.provisioning_state_time = ctx.clock()


class Shown(Protocol):
    """What ``refuse_if_deleting`` reads: a row, or the columns of one a query read."""

    @property
    def name(self) -> str: ...

    @property
    def provisioning_state(self) -> str: ...


def refuse_if_deleting(row: Shown, kind: str) -> None:
    """409 for a change to (or under) a resource being deleted, as ARM answers it."""
    if row.provisioning_state == DELETING:
        raise Conflict(
            f"The {kind} '{row.name}' is being deleted.",
            code=f"{kind.title().replace(' ', '')}BeingDeleted",
            target=row.name,
        )


def require(session: Session, model: type[T], name: str, kind: str, code: str | None = None, **parent: object) -> T:
    row = find(session, model, name, **parent)
    if row is None:
        raise NotFound(
            f"The {kind} '{name}' was not found.",
            code=code or f"{kind.title().replace(' ', '')}NotFound",
            target=name,
        )
    return row
