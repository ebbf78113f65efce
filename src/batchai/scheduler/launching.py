"""Starting the jobs a pass marked running: each process planned (environment, mounts, directories, its
command) and started on its node, then all of them recorded in one transaction, or why a job could not
start. The engine's launch threads run this; no pass waits for it. No database is touched while starting."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import Session

from batchai.providers.base import NodeProvider, ProcessSpec
from batchai.providers.local import make_link
from batchai.runtime import containers, distributed, job_dirs, launch, supervisor
from batchai.runtime.launcher import Follower
from batchai.runtime.supervisor import Handle
from batchai.scheduler import statements
from batchai.scheduler.settings import EngineSettings
from batchai.services import jobs as job_service
from batchai.states import JobState
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
    # A staged job: the process its only task follows (the job running on its node), its snapshot of the job's
    # errors (its state is STAGED, it has no start time), and once asked for, the launcher's follower.
    after: Handle | None = None
    ahead: int = 0  # the id of the job it follows
    errors: list[Any] = field(default_factory=list)
    cluster_id: int = 0
    priority: int = 0
    follower: Follower | None = None
    stderr: str | None = None
    stderrs: dict[int, str] = field(default_factory=dict)  # each process's stderr file, by rank
    execution_log: str | None = None
    container_on_host: str | None = None  # the image not used, when the job ran on the host instead
    started_line: str = ""  # the execution log's line for its start (a staged job's is written once it started)
    queued_count: int = 0  # the engine's count of jobs queued when the pass that made it read the line


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
    start); ``answered(start)``: a staged job's follower has an answer (called from any thread); ``pending``:
    the jobs being started or staged (their directories on a node are theirs already)."""

    db: Database
    provider: NodeProvider
    settings: EngineSettings
    clock: Callable[[], datetime]
    resolve: Callable[[Volume], Path]
    watch: Callable[[Handle, int], None]
    wake: Callable[[], None]
    answered: Callable[[JobStart], None]
    pending: Callable[[], set[int]]

    def start_jobs(self, starts: list[JobStart]) -> list[JobStart]:
        """Start each job's processes, then record them all, or why a job could not start (one transaction).
        A staged job's process is only asked for (``NodeProvider.follow``): ``record_followers`` records it.
        Returns the staged jobs that could not be prepared: they are not failed now (what they lack may be
        there by the time they would start), but started the usual way once a node is free."""
        launched: list[Launched] = []
        unprepared: list[JobStart] = []
        for start in starts:
            try:
                launched.append((start, self._start(start), None))
            except launch.LaunchError as exc:
                if start.after is not None and start.follower is None and not exc.started:
                    log.info("job %s is not staged: %s", start.segment, exc.message)
                    unprepared.append(start)
                    continue
                launched.append((start, exc.started, exc))
        if recorded := [(start, started, error) for start, started, error in launched if start.follower is None]:
            self._record(recorded)
        for start, _started, error in launched:
            if start.follower is not None:
                start.follower.handle.add_done_callback(functools.partial(_tell, self.answered, start))
            elif error is None:
                for slot in start.slots:
                    job_dirs.clear_earlier_jobs(slot.node_dir, {start.job_id, *self.pending()})
        return unprepared

    def record_followers(self, session: Session, starts: list[JobStart]) -> list[tuple[JobStart, list[Started]]]:
        """Staged jobs whose process started (or could not) run now: recorded in ``session`` as ``start_jobs``
        records. Returns those that started, for ``followed`` once that commits."""
        launched: list[Launched] = []
        for start in starts:
            assert start.follower is not None
            slot, (process,) = start.slots[0], start.processes
            try:
                launched.append((start, [(process.rank, start.follower.handle.result(), slot.node_name)], None))
            except Exception as exc:
                # The launcher went away before it answered (it may have started the process: its pid file says).
                job_temp = launch.job_temp_dir(slot.node_dir, start.job_id)
                handle = supervisor.find(launch.exit_file(job_temp, process.rank, start.attempts))
                if handle is not None:
                    launched.append((start, [(process.rank, handle, slot.node_name)], None))
                else:
                    error = launch.LaunchError("ProviderFailed", f"The job's process could not start: {exc}")
                    launched.append((start, [], error))
        self._write(session, launched)
        return [(start, started) for start, started, error in launched if not error]

    def followed(self, start: JobStart, started: list[Started]) -> Callable[[], None]:
        """Once a staged job's start is recorded: its execution log says so and its process is watched (at once,
        before the pass that could settle it); returns what may wait (the launch thread's): removing the job
        it followed from the node's job directories (only that one: others may be newer)."""
        append_log(start.execution_log, self.clock(), start.started_line)
        for _rank, handle, _node in started:
            self.watch(handle, start.job_id)
        return functools.partial(job_dirs.retire, launch.job_temp_dir(start.slots[0].node_dir, start.ahead))

    def _start(self, start: JobStart) -> list[Started]:
        """Start every task of a job (no database here); raises LaunchError carrying what did start. A staged
        job's only task is asked to follow the job ahead of it (``start.follower``) instead."""
        started: list[Started] = []
        try:
            spec = start.spec
            if start.attempts == 1:  # a job deleted before may have had this id: its node directories are not ours
                for slot in start.slots:
                    if (stale := launch.job_temp_dir(slot.node_dir, start.job_id)).exists():
                        job_dirs.retire(stale)
            hosts = [slot.address for slot in start.slots]
            ports = {
                node: self.provider.free_ports(start.slots[node], count)
                for node, count in distributed.ports_needed(spec, start.processes).items()
            }
            wiring = distributed.environment(spec, start.processes, hosts, ports)
            first_on_node: dict[int, int] = {}
            for process in start.processes:
                runs_prep = first_on_node.setdefault(process.node, process.rank) == process.rank
                plan = self._plan(start, process, wiring[process.rank], hosts, runs_prep)
                self._prepare(plan, process)
                task = self._task(start, process, plan)
                try:
                    if start.after is not None:
                        start.follower = self.provider.follow(start.after, task)
                        if start.follower is not None:
                            return started  # it starts once the job ahead of it has ended: record_followers
                        if self.provider.poll(start.after) is None:  # still runs, but not as the provider's
                            raise launch.LaunchError("NodesNotAvailable", "The job's node was still busy.")
                        append_log(start.execution_log, self.clock(), start.started_line)  # (it ended: start now)
                    handle = self.provider.start(task)
                except OSError as exc:
                    raise launch.LaunchError("ProcessStartFailed", f"The job's process could not start: {exc}") from exc
                started.append((process.rank, handle, start.slots[process.node].node_name))
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

    def _plan(
        self, start: JobStart, process: distributed.Process, wiring: dict[str, str], hosts: list[str], runs_prep: bool
    ) -> launch.LaunchPlan:
        """The launch plan of one of a job's processes on its node (``launch.plan``)."""
        spec, slot = start.spec, start.slots[process.node]

        def file_server(resource_id: str, source: str) -> Path:
            root = start.file_servers.get(resource_id)
            if root is None:
                raise launch.LaunchError("FileServerNotFound", f"The file server '{resource_id}' was not found.")
            return root / source.strip("/") if source.strip("/") else root

        reaches_others = distributed.reaches_other_nodes(spec, process)
        # mpirun starts the ranks of all the job's nodes on this host from its own environment, as one host's:
        # they see the GPUs of all those nodes (in node order, each node's ranks after the previous node's), so
        # that a rank's local rank indexes a GPU of the job (Horovod's set_device(local_rank)), rather than only
        # the first node's.
        gpus = [g for s in start.slots if s.address == slot.address for g in s.gpus] if reaches_others else None
        # Every process of a distributed job sees the MPI host file, as on Batch AI (a plain one stays plain).
        many = len(start.slots) > 1 or len(start.processes) > 1
        return launch.plan(
            job_id=start.job_id,
            spec=spec,
            segment=start.segment,
            cluster_spec=start.cluster_spec,
            slot=slot,
            process=process,
            wiring=wiring,
            base_env=dict(self.settings.base_env),
            resolve=self.resolve,
            file_server=file_server,
            default_python=self.settings.default_python,
            runs_prep=runs_prep,
            attempt=start.attempts,
            mpi_hostfile=distributed.mpi_hostfile(spec, hosts) if reaches_others or many else None,
            gpus=None if gpus is None else tuple(gpus),
            # mpirun starts ranks on every node: once each node's job preparation has ended.
            awaits=tuple(
                (other.node_name, launch.prep_marker(launch.job_temp_dir(other.node_dir, start.job_id), start.attempts))
                for other in start.slots
                if other is not slot and reaches_others
            ),
        )

    def _prepare(self, plan: launch.LaunchPlan, process: distributed.Process) -> None:
        """A process's mounts (links, unmanaged file systems) and directories on its node."""
        try:
            job_dirs.make(plan.job_temp)
            for link, target in plan.links:
                make_link(link, target)
            for command, path in plan.unmanaged:
                output = plan.stdouterr / f"mount{process.suffix}.txt"  # beside the job's other output
                launch.run_mount(command, path, dict(self.settings.base_env), output)
            for directory in plan.directories:
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise launch.LaunchError("JobPreparationFailed", f"Preparing the job's directories failed: {exc}") from exc

    def _task(self, start: JobStart, process: distributed.Process, plan: launch.LaunchPlan) -> ProcessSpec:
        """What the provider runs for a process: its command (in its container, if any) after the job
        preparation; the job's files, execution log and node reservation are set up with its first process."""
        slot = start.slots[process.node]
        start.stderrs[process.rank] = str(plan.stdouterr / plan.stderr_name)
        if process.rank == 0:  # (a job that cannot start says why in its execution log too)
            start.stderr = start.stderrs[0]
            start.execution_log = str(plan.stdouterr / "execution.log")
        # What the toolkit needs on the node is checked after the job preparation, which may install it.
        checks: list[str] | None = [] if plan.prep_command else None
        command = launch.toolkit_command(start.spec, plan.env, plan.python, process, checks)
        if plan.container and self.settings.containers_on_host:
            start.container_on_host = containers.image(plan)
        elif plan.container and command:
            command = containers.wrap(plan, command)
        if process.rank == 0:
            start.started_line = (
                f"Job started on {len(start.slots)} node(s) of cluster {start.cluster_name}; "
                f"attempt {start.attempts}. {launch.describe(plan)}"
            )
            if start.after is None:  # (a staged job's once it has started)
                append_log(start.execution_log, self.clock(), start.started_line)
            elif start.execution_log:  # made now, so that recording its start (the engine's thread) only adds a line
                with contextlib.suppress(OSError):
                    open(start.execution_log, "a").close()
            if start.container_on_host is not None:
                append_log(
                    start.execution_log,
                    self.clock(),
                    f"Container image '{start.container_on_host}' (containerSettings) not used: the server "
                    "runs container jobs directly on the host (--containers-on-host).",
                )
            # Once the job's log exists: a refusal is written there.
            self.provider.reserve(gang(start.job_id, start.attempts), [dict(s.info) for s in start.slots])
        return ProcessSpec(
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

    def _record(self, launched: list[Launched]) -> None:
        """Write down the processes of the jobs just started (one transaction), or why one could not start."""
        with self.db.session() as session:
            self._write(session, launched)

    def _write(self, session: Session, launched: list[Launched]) -> None:
        """Record in ``session`` the processes of jobs that started, or why one could not start. A staged job
        runs now: on the node it was given, unless the API asked it to stop meanwhile (it is terminating then,
        and the engine stops it)."""
        now = self.clock()
        rows = []
        for start, started, error in launched:
            if start.after is not None:  # a staged job: it runs now (or failed to), on the node it was given
                staged = SimpleNamespace(execution_state=JobState.STAGED.value, start_time=None, errors=start.errors)
                job_service.switch_state_row(session.connection(), start.job_id, staged, JobState.RUNNING, now)
                statements.PROMOTE_NEXT.run(session.connection(), {"jid": start.job_id, "now": now})
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
            statements.TASK_STARTED.run(session.connection(), rows)

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


def _tell(answered: Callable[[JobStart], None], start: JobStart, _done: object) -> None:
    answered(start)


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
