"""Starting the jobs a pass marked running: each process planned (environment, mounts, directories, its
command) and started on its node, then all of them recorded in one transaction, or why a job could not
start. The engine's launch threads run this; no pass waits for it. No database is touched while starting."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from batchai.providers.base import NodeProvider
from batchai.providers.local import make_link
from batchai.runtime import containers, distributed, launch, supervisor
from batchai.runtime.supervisor import Handle
from batchai.scheduler import statements
from batchai.scheduler.settings import EngineSettings
from batchai.storage.base import Volume
from batchai.store.db import Database
from batchai.store.tables import Job

log = logging.getLogger("batchai.engine")
# Launch errors that say "not now" rather than "never": the job is requeued (up to max_attempts starts).
# Starts that may succeed later: Ray busy elsewhere, or a provider failing in a way it does not document
# (e.g. Ray losing the agent of a node twice in a row).
RETRYABLE_LAUNCH_ERRORS = frozenset({"NodesNotAvailable", "ProviderFailed"})
# A process that started: its rank in the job, its handle, and the name of its node.
Started = tuple[int, Handle, str]


@dataclass
class JobStart:
    """What starting a job needs, read from the database before its processes start."""

    job_id: int
    spec: dict[str, Any]
    segment: str
    cluster_name: str
    cluster_spec: dict[str, Any]
    attempts: int
    slots: list[launch.NodeSlot]
    file_servers: dict[str, Path]
    processes: list[distributed.Process]
    stderr: str | None = None
    stderrs: dict[int, str] = field(default_factory=dict)  # each process's stderr file, by rank
    execution_log: str | None = None
    container_on_host: str | None = None  # the image not used, when the job ran on the host instead


# A job's start: what was planned, the processes that started (rank, handle, node name), and the error if any.
Launched = tuple[JobStart, list[Started], launch.LaunchError | None]


def gang(job_id: int, attempt: int) -> str:
    """The name of a job's node reservation for one attempt (names are never reused)."""
    return f"job-{job_id}-{attempt}"


def process_info(process: distributed.Process) -> dict[str, Any]:
    return {"role": process.role, **({"auxiliary": True} if process.auxiliary else {})}


@dataclass(eq=False)
class Starter:
    """Starts jobs' processes and records them. ``resolve``: a storage volume's directory on this host;
    ``watch(handle, job_id)``: wake the engine when the process ends; ``wake``: look again (a job failed to
    start)."""

    db: Database
    provider: NodeProvider
    settings: EngineSettings
    clock: Callable[[], datetime]
    resolve: Callable[[Volume], Path]
    watch: Callable[[Handle, int], None]
    wake: Callable[[], None]

    def start_jobs(self, starts: list[JobStart]) -> None:
        """Start each job's processes, then record them all, or why a job could not start (one transaction)."""
        launched: list[Launched] = []
        for start in starts:
            try:
                launched.append((start, self._start(start), None))
            except launch.LaunchError as exc:
                launched.append((start, exc.started, exc))
        if launched:
            self._record(launched)
        for start, _started, error in launched:
            if error is None:
                for slot in start.slots:
                    clear_earlier_jobs(slot.node_dir, start.job_id)

    def _start(self, start: JobStart) -> list[Started]:
        """Start every task of a job (no database here); raises LaunchError carrying what did start."""
        started: list[Started] = []

        def file_server(resource_id: str, source: str) -> Path:
            root = start.file_servers.get(resource_id)
            if root is None:
                raise launch.LaunchError("FileServerNotFound", f"The file server '{resource_id}' was not found.")
            return root / source.strip("/") if source.strip("/") else root

        try:
            spec = start.spec
            if start.attempts == 1:  # a job deleted before may have had this id: its node directories are not ours
                for slot in start.slots:
                    if (stale := launch.job_temp_dir(slot.node_dir, start.job_id)).exists():
                        remove_job_dir(stale)
            hosts = [slot.address for slot in start.slots]
            ports = {
                node: self.provider.free_ports(start.slots[node], count)
                for node, count in distributed.ports_needed(spec, start.processes).items()
            }
            wiring = distributed.environment(spec, start.processes, hosts, ports)
            first_on_node: dict[int, int] = {}
            # Every process of a distributed job sees the MPI host file, as on Batch AI (a plain one stays plain).
            many = len(start.slots) > 1 or len(start.processes) > 1
            for process in start.processes:
                slot = start.slots[process.node]
                reaches_others = distributed.reaches_other_nodes(spec, process)
                # mpirun starts the ranks of all the job's nodes on this host from its own environment, as one
                # host's: they see the GPUs of all those nodes (in node order, each node's ranks after the
                # previous node's), so that a rank's local rank indexes a GPU of the job (Horovod's
                # set_device(local_rank)), rather than only the first node's.
                gpus = [g for s in start.slots if s.address == slot.address for g in s.gpus] if reaches_others else None
                plan = launch.plan(
                    job_id=start.job_id,
                    spec=spec,
                    segment=start.segment,
                    cluster_spec=start.cluster_spec,
                    slot=slot,
                    process=process,
                    wiring=wiring[process.rank],
                    base_env=dict(self.settings.base_env),
                    resolve=self.resolve,
                    file_server=file_server,
                    default_python=self.settings.default_python,
                    runs_prep=first_on_node.setdefault(process.node, process.rank) == process.rank,
                    attempt=start.attempts,
                    mpi_hostfile=distributed.mpi_hostfile(spec, hosts) if reaches_others or many else None,
                    gpus=None if gpus is None else tuple(gpus),
                    # mpirun starts ranks on every node: once each node's job preparation has ended.
                    awaits=tuple(
                        (
                            other.node_name,
                            launch.prep_marker(launch.job_temp_dir(other.node_dir, start.job_id), start.attempts),
                        )
                        for other in start.slots
                        if other is not slot and reaches_others
                    ),
                )
                try:
                    for link, target in plan.links:
                        make_link(link, target)
                    for command, path in plan.unmanaged:
                        output = plan.stdouterr / f"mount{process.suffix}.txt"  # beside the job's other output
                        launch.run_mount(command, path, dict(self.settings.base_env), output)
                    for directory in plan.directories:
                        directory.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise launch.LaunchError(
                        "JobPreparationFailed", f"Preparing the job's directories failed: {exc}"
                    ) from exc
                start.stderrs[process.rank] = str(plan.stdouterr / plan.stderr_name)
                if process.rank == 0:  # (a job that cannot start says why in its execution log too)
                    start.stderr = start.stderrs[0]
                    start.execution_log = str(plan.stdouterr / "execution.log")
                # What the toolkit needs on the node is checked after the job preparation, which may install it.
                checks: list[str] | None = [] if plan.prep_command else None
                command = launch.toolkit_command(spec, plan.env, self.settings.default_python, process, checks)
                if plan.container and self.settings.containers_on_host:
                    start.container_on_host = containers.image(plan)
                elif plan.container and command:
                    command = containers.wrap(plan, command)
                if process.rank == 0:
                    append_log(
                        start.execution_log,
                        self.clock(),
                        f"Job started on {len(start.slots)} node(s) of cluster {start.cluster_name}; "
                        f"attempt {start.attempts}. {launch.describe(plan)}",
                    )
                    if start.container_on_host is not None:
                        append_log(
                            start.execution_log,
                            self.clock(),
                            f"Container image '{start.container_on_host}' (containerSettings) not used: the server "
                            "runs container jobs directly on the host (--containers-on-host).",
                        )
                if process.rank == 0:  # once the job's log exists: a refusal is written there
                    self.provider.reserve(gang(start.job_id, start.attempts), [dict(s.info) for s in start.slots])
                try:
                    handle = self.provider.start(
                        plan.job_temp / f"task-{process.rank}.sh",
                        launch.script_body(plan, command, checks),
                        env=plan.env,
                        cwd=Path(plan.env["AZ_BATCHAI_JOB_TEMP"]),
                        stdout=plan.stdouterr / plan.stdout_name,
                        stderr=plan.stdouterr / plan.stderr_name,
                        exit_file=launch.exit_file(plan.job_temp, process.rank, start.attempts),
                        node=dict(slot.info),
                        argv=launch.plain_argv(plan, command),
                    )
                except OSError as exc:
                    raise launch.LaunchError("ProcessStartFailed", f"The job's process could not start: {exc}") from exc
                started.append((process.rank, handle, slot.node_name))
                self.watch(handle, start.job_id)
        except launch.LaunchError as exc:
            exc.started = started
            raise
        except Exception as exc:
            log.exception("the node provider failed to start job %s", start.segment)
            message = f"The node provider failed to start the job's processes: {exc}"
            error = launch.LaunchError("ProviderFailed", message)
            error.started = started
            raise error from exc
        return started

    def _record(self, launched: list[Launched]) -> None:
        """Write down the processes of the jobs just started (one transaction), or why one could not start."""
        now = self.clock()
        with self.db.session() as session:
            rows = []
            for start, started, error in launched:
                files = {"stderr": start.stderr, "execution_log": start.execution_log}
                if start.container_on_host is not None:  # recorded with the job's master task
                    files["container_on_host"] = start.container_on_host
                    log.info("job %s runs on the host, not in the image %s", start.segment, start.container_on_host)
                if error is None:  # the common case
                    roles = {p.rank: process_info(p) for p in start.processes}
                    rows += [
                        {
                            "jid": start.job_id,
                            "rank": index,
                            "process": handle.pid,
                            "process_start": handle.start,
                            "at": now,
                            "details": {
                                **roles[index],
                                **supervisor.as_info(handle),
                                "node": node,
                                "stderr": start.stderrs.get(index),
                                **(files if index == 0 else {}),
                            },
                        }
                        for index, handle, node in started
                    ]
                else:
                    self._record_failure(session, start, started, error, files)
            if rows:
                session.connection().execute(statements.TASK_STARTED, rows)

    def _record_failure(
        self,
        session: Session,
        start: JobStart,
        started: list[Started],
        error: launch.LaunchError,
        files: dict[str, str | None],
    ) -> None:
        """A job that could not start: what did start is recorded (to be stopped), and why it failed."""
        now = self.clock()
        job = session.get(Job, start.job_id)
        if job is None:
            return
        by_index = {index: (handle, node) for index, handle, node in started}
        for task in job.tasks:
            if task.index in by_index:
                handle, node = by_index[task.index]
                task.pid = handle.pid
                task.pid_start = handle.start
                task.started_at = self.clock()
                task.info = {**supervisor.as_info(handle), "node": node, **(files if task.index == 0 else {})}
            else:
                task.finished_at = now
                task.info = {**task.info, **(files if task.index == 0 else {})}
        job.notes = {**job.notes, "launch_error": {"code": error.code, "message": error.message}}
        if job.stop_reason is None:
            # Nodes that the provider would not give now (e.g. Ray busy elsewhere): try again later.
            retry = error.code in RETRYABLE_LAUNCH_ERRORS and job.attempts < self.settings.max_attempts
            job.stop_reason = "requeue" if retry else "launch"
        job_log(job, self.clock(), f"The job could not start: {error.message}")
        self.wake()


def clear_earlier_jobs(node_dir: Path, job_id: int) -> None:
    """Remove the temporary directories of the jobs that ran on the node before ``job_id`` started there, as
    Batch AI emptied ``$AZ_BATCHAI_JOB_TEMP_DIR`` for each new job: a node runs one job at a time, so they
    have all ended. Only job directories go (named by job id); other files there, such as output a job was
    told to write there, stay. A directory that still holds a mounted file system (an unmanaged one the job
    mounted) is left whole, so that nothing is ever deleted through a mount."""
    try:
        entries = list(os.scandir(node_dir / "jobs"))
    except OSError:
        return
    for entry in entries:
        if entry.name.isdigit() and int(entry.name) != job_id and entry.is_dir(follow_symlinks=False):
            remove_job_dir(Path(entry.path))


def remove_job_dir(directory: Path) -> None:
    """Remove a job's temporary directory, unless a file system is still mounted in it (nothing is ever deleted
    through a mount); a directory already gone is fine."""
    if _holds_mount(directory):
        log.warning("left %s in place: a file system is still mounted in it", directory)
        return
    shutil.rmtree(directory, ignore_errors=True)


def _holds_mount(directory: Path) -> bool:
    """Whether a mount point lies in ``directory`` (links are not followed)."""
    return any(os.path.ismount(os.path.join(root, d)) for root, dirs, _files in os.walk(directory) for d in dirs)


def master_info(job: Job) -> dict[str, Any]:
    """What is recorded of a job's task 0 (its stderr and execution log, its process)."""
    return next((dict(t.info) for t in job.tasks if t.index == 0), {})


def job_log(job: Job, when: datetime, message: str) -> None:
    append_log(master_info(job).get("execution_log"), when, message)


def append_log(path: str | None, when: datetime, message: str) -> None:
    """A line in a job's execution log (``execution.log`` beside its stdout); a log that cannot be written is
    left alone."""
    if not path:
        return
    try:
        with open(path, "a") as handle:
            handle.write(f"{when.isoformat()} {message}\n")
    except OSError:
        pass
