"""The tables. Specs are stored as the wire JSON the user sent (secrets included, never returned)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        # SQLite drops the zone; PostgreSQL answers in the session's zone, which need not be UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Named:
    """A resource with a name, looked up case-insensitively through ``key`` as ARM does."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    provisioning_state: Mapped[str] = mapped_column(String(16), default="succeeded")
    provisioning_state_time: Mapped[datetime]


class ResourceGroup(Named, Base):
    __tablename__ = "resource_groups"
    __table_args__ = (UniqueConstraint("subscription", "key"),)

    subscription: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)

    workspaces: Mapped[list[Workspace]] = relationship(back_populates="group", cascade="all, delete-orphan")
    storage_accounts: Mapped[list[StorageAccount]] = relationship(back_populates="group", cascade="all, delete-orphan")


class Workspace(Named, Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("group_id", "key"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("resource_groups.id", ondelete="CASCADE"))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)

    group: Mapped[ResourceGroup] = relationship(back_populates="workspaces")
    experiments: Mapped[list[Experiment]] = relationship(back_populates="workspace", cascade="all, delete-orphan")
    clusters: Mapped[list[Cluster]] = relationship(back_populates="workspace", cascade="all, delete-orphan")
    file_servers: Mapped[list[FileServer]] = relationship(back_populates="workspace", cascade="all, delete-orphan")


class Experiment(Named, Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))

    workspace: Mapped[Workspace] = relationship(back_populates="experiments")
    jobs: Mapped[list[Job]] = relationship(back_populates="experiment", cascade="all, delete-orphan")


class Cluster(Named, Base):
    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    spec: Mapped[dict[str, Any]]
    allocation_state: Mapped[str] = mapped_column(String(16), default="steady")
    allocation_state_time: Mapped[datetime]
    errors: Mapped[list[Any]] = mapped_column(default=list)

    workspace: Mapped[Workspace] = relationship(back_populates="clusters")
    nodes: Mapped[list[Node]] = relationship(
        back_populates="cluster", cascade="all, delete-orphan", order_by="Node.index"
    )


class FileServer(Named, Base):
    __tablename__ = "file_servers"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    spec: Mapped[dict[str, Any]]

    workspace: Mapped[Workspace] = relationship(back_populates="file_servers")


class Job(Named, Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id", ondelete="SET NULL"))
    spec: Mapped[dict[str, Any]]
    tool_type: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    node_count: Mapped[int] = mapped_column(Integer)
    output_segment: Mapped[str] = mapped_column(String(512))
    execution_state: Mapped[str] = mapped_column(String(16), index=True)
    execution_state_time: Mapped[datetime]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    errors: Mapped[list[Any]] = mapped_column(default=list)
    # Why a running job is being stopped (user, wallclock, deallocation, ...): the final state follows from it.
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    # Scheduling: how often smaller jobs started ahead of this one (see scheduler.matching).
    skips: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Optimistic locking: the API and the engine never silently overwrite each other's change of a job.
    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}

    experiment: Mapped[Experiment] = relationship(back_populates="jobs")
    tasks: Mapped[list[Task]] = relationship(back_populates="job", cascade="all, delete-orphan", order_by="Task.index")


# A cluster's line in the order the scheduler takes it (``statements.QUEUE_HEAD``): the head is read from the
# index, however many jobs wait in the line or have run on the cluster before.
Index("ix_jobs_line", Job.cluster_id, Job.execution_state, Job.priority.desc(), Job.created_at, Job.id)


class StorageAccount(Named, Base):
    """A batchai storage account; its name is unique on the server, as Azure's are worldwide."""

    __tablename__ = "storage_accounts"
    __table_args__ = (UniqueConstraint("key"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("resource_groups.id", ondelete="CASCADE"))
    location: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)

    group: Mapped[ResourceGroup] = relationship(back_populates="storage_accounts")


class Node(Base):
    """A node of a cluster: its state, and the job it runs (if any)."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    index: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    state_time: Mapped[datetime]
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    # A staged job: it runs here next, started the moment ``job_id``'s process ends (see JobState.STAGED).
    next_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", name="fk_nodes_next_job")
    )
    # Provider data: work directory, setup task process, Ray node id, ...
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(default=list)

    cluster: Mapped[Cluster] = relationship(back_populates="nodes")


class Task(Base):
    """One process of a job on one node (task 0 is the master), with what re-attaching needs."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))
    index: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int | None]
    pid_start: Mapped[float | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)

    job: Mapped[Job] = relationship(back_populates="tasks")
