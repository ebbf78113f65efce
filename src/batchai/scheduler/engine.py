"""The engine: one background loop that makes the world match what the API recorded.

Each pass: running jobs (finished processes, stop requests, wall-clock limits), then scheduling (load
queued jobs and free nodes, decide, apply), and now and then the clusters' nodes (``nodes.Nodes``: target
sizes, setup tasks, auto-scale). The jobs a pass marks running go to the launch threads, which start and
record their processes (``launching.Starter``). The API wakes the loop on every change; finished processes
wake it too; otherwise it sleeps until the next wall-clock deadline or a short tick. On start it re-attaches
to processes that still run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from batchai.errors import TooManyRequests
from batchai.models.base import parse_duration
from batchai.providers.base import NodeProvider, ProviderUnavailable
from batchai.runtime import distributed, job_dirs, launch, supervisor
from batchai.runtime.supervisor import Handle, Outcome
from batchai.scheduler import endings, node_commands, statements
from batchai.scheduler.launching import (
    JobStart,
    Started,
    Starter,
    append_log,
    gang,
    job_log,
    process_info,
)
from batchai.scheduler.matching import Decision, QueuedJob, place
from batchai.scheduler.nodes import Nodes, NodeState, describe_node, file_server_dir, file_server_path, settled_cluster
from batchai.scheduler.settings import EngineSettings
from batchai.services import clusters as cluster_service
from batchai.services import deletes
from batchai.services import jobs as job_service
from batchai.services.context import CommandResult, Ctx, NodeTarget
from batchai.states import JobState
from batchai.storage.base import StorageBackend, Volume
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Node, Task

log = logging.getLogger("batchai.engine")
CLUSTER_SYNC_SECONDS = 0.1
# How often clusters that are settled (steady, fixed size, nodes on this host) are looked at anyway.
SETTLED_CLUSTER_SYNC_SECONDS = 1.0
# Commands run on nodes at once (execOnNode): fewer than the API's worker threads (40), which they hold.
MAX_NODE_COMMANDS = 16
# While passes keep failing (e.g. the database is down), how often a line says so.
FAILED_PASS_LOG_SECONDS = 60.0


class Engine:
    def __init__(
        self,
        db: Database,
        storage: StorageBackend,
        provider: NodeProvider,
        settings: EngineSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.storage = storage
        self.provider = provider
        self.settings = settings
        self.clock = clock
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping: set[int] = set()  # task ids being stopped by a helper thread
        self._lock = threading.Lock()
        self.starter = Starter(
            db=db,
            provider=provider,
            settings=settings,
            clock=clock,
            resolve=self._resolver,
            watch=lambda handle, job_id: self._watch(handle, job_id=job_id),
            wake=self.wake,
            answered=lambda _start: self.wake(),  # (the next pass records it)
            pending=self._pending,
        )
        self.nodes = Nodes(
            db=db,
            storage=storage,
            provider=provider,
            settings=settings,
            clock=clock,
            resolve=self._resolver,
            watch=lambda handle: self._watch(handle, clusters=True),
        )
        self._last_sync = 0.0
        self._clusters_changed = True  # the API changed a cluster, or a setup task ended: look soon
        self._pass_needed = True  # something other than a queued job happened since the last pass
        self._all_busy = False  # after the last scheduling: no node free anywhere
        self._limits: dict[int, timedelta] = {}  # the maxWallClockTime of jobs started or staged, by job id
        # Jobs marked running whose processes a launch thread is starting (and recording): passes leave
        # them alone until then. ``_launched`` is notified as they leave the set.
        self._launching: set[int] = set()
        self._launched = threading.Condition(self._lock)
        self._looked_past_launching = False  # a pass left a launching job alone: look again after it
        # Staged jobs whose process the launcher starts when the job ahead of it on its node ends (see
        # JobState.STAGED): from their hand-off until their start is recorded, or their start is called off.
        self._staged: dict[int, JobStart] = {}
        self._outranked = False  # a job was queued with a higher priority than one staged on its cluster
        # Jobs queued, counted, and when each (cluster, priority) last had one: a job being staged joins
        # ``_staged`` only once its start is arranged, and is checked then against what was queued since the
        # pass that staged it looked at the line (``_launch``); ``job_queued`` checks those already staged.
        self._queued_count = 0
        self._last_queued: dict[tuple[int, int], int] = {}
        self._unstageable: set[int] = set()  # jobs whose preparation failed when staged: they start when a node is free
        self._launches: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()  # the launch threads' work
        self._node_commands = threading.BoundedSemaphore(MAX_NODE_COMMANDS)
        self._launch_threads: list[threading.Thread] = []
        self._abandoned_deletes: list[deletes.Abandoned] = []  # (see _finish_deletes)
        self._failed_passes = 0  # in a row
        self._failure_logged = 0.0  # (monotonic)

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._recover()
        self._launch_threads = [
            threading.Thread(target=self._launch_loop, name=f"batchai-launch-{i}", daemon=True)
            for i in range(self.provider.launch_threads)
        ]
        for thread in self._launch_threads:
            thread.start()
        self._thread = threading.Thread(target=self._run, name="batchai-engine", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop (after the launches under way); processes keep running and are re-attached at the
        next start."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for _ in self._launch_threads:
            self._launches.put(None)
        for thread in self._launch_threads:
            thread.join(timeout=30)

    def wake(self, clusters: bool = False, queued: bool = False) -> None:
        """Run a pass now. ``clusters``: something about clusters changed (look at them in this pass);
        ``queued``: only a job was queued, which needs no pass while no node is free."""
        if clusters:
            self._clusters_changed = True
        if not queued:
            self._pass_needed = True
        self._wake.set()

    def _run(self) -> None:
        due = 0.0  # when the next pass is due without being woken (monotonic)
        while not self._stopped.is_set():
            self._wake.clear()
            needed, self._pass_needed = self._pass_needed, False
            if not needed and self._all_busy and time.monotonic() < due:
                self._wake.wait(due - time.monotonic())  # jobs were queued, but no node is free for them
                continue
            try:
                timeout = self.step()
                if self._failed_passes:
                    log.info("engine passes work again, after %d that failed", self._failed_passes)
                    self._failed_passes = 0
            except StaleDataError as exc:
                log.info("a job changed under the engine, looking again: %s", exc)
                timeout = 0.0  # the API changed a job meanwhile: look again at once
                self._pass_needed = True
            except ProviderUnavailable as exc:  # (e.g. polling a job's processes on a Ray cluster that is down)
                self._log_failed_pass(exc)
                self.nodes.provider_down(str(exc))
                timeout = self.settings.tick_seconds
                self._all_busy = False
            except Exception as exc:
                self._log_failed_pass(exc)
                timeout = self.settings.tick_seconds
                self._all_busy = False
            due = time.monotonic() + timeout
            if self._wake.wait(timeout) is False:
                self._pass_needed = True  # the time was up: a full pass

    def _log_failed_pass(self, exc: Exception) -> None:
        """The first of failed passes in a row with its traceback; then a line a minute while they go on (a
        database that is down must not fill the log)."""
        self._failed_passes += 1
        now = time.monotonic()
        if self._failed_passes == 1:
            log.exception("engine pass failed")
            self._failure_logged = now
        elif now - self._failure_logged >= FAILED_PASS_LOG_SECONDS:
            log.error("engine passes still fail (%d in a row): %s: %s", self._failed_passes, type(exc).__name__, exc)
            self._failure_logged = now

    def step(self) -> float:
        """One pass over everything; returns how long the loop may sleep."""
        # Recording the staged jobs that started, settling ended jobs and deciding what starts on the nodes they
        # freed (or is staged on the nodes busy again) is one transaction.
        with self.db.session() as session:
            followed, started = self._record_followers(session)
            deadline = self._watch_jobs(session, {start.job_id for start in followed})
            starts = self._decide_and_mark(session)
        if followed:
            with self._launched:
                for start in followed:
                    if self._staged.get(start.job_id) is start:
                        del self._staged[start.job_id]
                self._launched.notify_all()
        cleanups = [self.starter.followed(start, processes) for start, processes in started]
        self._hand_off(starts)  # (before the cleanups: the next job's start is what waits)
        for cleanup in cleanups:  # (file system work: not in the engine's thread)
            self._launches.put(cleanup)
        # Clusters change rarely and slowly (resizes, setup tasks): at most ten passes a second look, and
        # settled ones (steady, fixed size, on this host) once a second unless something changed.
        now_mono = time.monotonic()
        settled = self.nodes.settled and not self._clusters_changed
        interval = SETTLED_CLUSTER_SYNC_SECONDS if settled else CLUSTER_SYNC_SECONDS
        if now_mono - self._last_sync >= interval:
            self._last_sync = now_mono
            self._clusters_changed = False
            self._stop_orphans()
            self._finish_deletes()
            self._unstage_unsettled()  # (before a node a job is staged on changes)
            if self.nodes.sync():
                self._schedule()  # nodes became idle: start what waits for them
        else:
            wait = interval - (now_mono - self._last_sync)
            deadline = _earliest(deadline, self.clock() + timedelta(seconds=wait))
        now = self.clock()
        sleep = self.settings.tick_seconds
        if deadline is not None:
            sleep = max(0.01, min(sleep, (deadline - now).total_seconds()))
        return sleep

    def _unstage_unsettled(self) -> None:
        """Before the clusters' nodes change (a resize, a deletion): staged jobs whose node may go have their
        start called off and wait in line again. One that started meanwhile is a running job like any other."""
        with self._lock:
            staged = set(self._staged)
        if not staged:
            return
        keep = set()
        with self.db.session() as session:
            for node in session.scalars(select(Node).filter(Node.next_job_id.in_(staged))):
                cluster = node.cluster
                # (the API may have changed its target since the cluster was last seen steady)
                steady = settled_cluster(cluster) and len(cluster.nodes) == cluster_service.capacity(cluster.spec)
                if steady and cluster.provisioning_state != "deleting" and node.state == NodeState.RUNNING:
                    keep.add(node.next_job_id)
        for job_id in staged - keep:
            if self._unstage(job_id):
                with self.db.session() as session:
                    self._revert_staged(session, job_id)

    def _revert_staged(self, session: Session, job_id: int) -> None:
        """A staged job whose start was called off (or, after a restart, never came) waits in line again, as
        it was before. One asked to stop meanwhile is left to the passes (it ends as never started)."""
        connection = session.connection()
        row = statements.JOB_TO_START.run(connection, {"jid": job_id}).first()
        if row is None or row.execution_state != JobState.STAGED.value:
            return
        job_service.switch_state_row(connection, job_id, row, JobState.QUEUED, self.clock(), attempts=row.attempts - 1)
        statements.DELETE_TASKS.run(connection, {"jid": job_id})
        statements.UNSTAGE.run(connection, {"jid": job_id})
        log.info("job %s: its start on a busy node was called off; it waits in line again", job_id)

    def _stop_orphans(self) -> None:
        """Queued jobs without a cluster: created while their cluster was being deleted (the API found the
        cluster, then the delete went first), they would wait for good. They end as its other jobs did."""
        with self.db.session() as session:
            orphans = session.scalars(
                select(Job).filter(Job.cluster_id.is_(None), Job.execution_state == JobState.QUEUED)
            ).all()
            for job in orphans:
                log.info("job %s: its cluster was deleted as it was created", job.name)
                job_service.request_stop(self._ctx(session), job, "cluster_deleted")
        if orphans:
            self.wake()

    def _finish_deletes(self) -> None:
        """The deletes a stopped server left half done (resources marked deleting, their jobs asked to stop):
        once their jobs have ended, each resource goes as the API's delete would have removed it."""
        for kind, row_id in list(self._abandoned_deletes):
            with self.db.session() as session:
                ctx = Ctx(session=session, storage=self.storage, clock=self.clock, runtime=self)
                if not deletes.finish(ctx, kind, row_id):
                    continue  # the engine is still ending its jobs
            self._abandoned_deletes.remove((kind, row_id))
            for callback in ctx.after_commit:  # (once committed: e.g. the nodes' directories go)
                callback()

    def _ctx(self, session: Session) -> Ctx:
        return Ctx(session=session, storage=self.storage, clock=self.clock)

    def _watch(self, handle: Handle, clusters: bool = False, job_id: int | None = None) -> None:
        """Wake the loop when the process ends (``clusters``: a setup task, which the cluster pass settles;
        ``job_id``: a task of a job being launched, which the pass after its launch must look at)."""

        def ended() -> None:
            if job_id is not None:
                with self._lock:
                    if job_id in self._launching:
                        self._looked_past_launching = True
            self.wake(clusters)

        if self.provider.on_exit(handle, ended):
            return

        def wait() -> None:
            try:
                self.provider.wait(handle)
            except Exception as exc:  # e.g. the provider's connection closed at shutdown: the next pass polls
                log.debug("waiting on %s stopped: %s", handle.pid, exc)
            ended()

        threading.Thread(target=wait, name=f"wait-{handle.pid}", daemon=True).start()

    # -- recovery --------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Re-attach to every process recorded as running; the next pass settles those that ended. Commands
        run on nodes (``execOnNode``) are not: they were waited for by a request of the server that stopped,
        so they are stopped (in the background, as stopping takes up to the grace period)."""
        with self.db.session() as session:
            # Clusters a stopped server was deleting (no request waits on them now): the engine finishes them.
            self._abandoned_deletes = deletes.abandoned(session)
            for task in session.scalars(select(Task).filter(Task.exit_code.is_(None), Task.finished_at.is_(None))):
                handle = supervisor.from_info(task.info)
                if handle is not None:
                    self._watch(handle)
            # Staged jobs: the launcher dropped their starts when the server that asked went away, unless a
            # start came first (its pid file says).
            for job in session.scalars(select(Job).filter(Job.execution_state == JobState.STAGED)):
                handle = self._unrecorded(session, job, job.tasks[0]) if job.tasks else None
                if handle is None:
                    self._revert_staged(session, job.id)
                    continue
                job_service.switch_state(self._ctx(session), job, JobState.RUNNING)
                statements.PROMOTE_NEXT.run(session.connection(), {"jid": job.id, "now": self.clock()})
            nodes = list(session.scalars(select(Node)))
            for node in nodes:  # a setup task under way
                handle = supervisor.from_info(node.info.get("setup") or {})
                if handle is not None and node.state == NodeState.PREPARING:
                    self._watch(handle, clusters=True)
            places = [
                (self.provider.node_dir(node.cluster_id, node.name), str(node.info.get("ray_node_id", "")))
                for node in nodes
            ]
            # Deletes whose release a stopped server cut short.
            self.provider.sweep(set(session.scalars(select(Cluster.id))), {(n.cluster_id, n.name) for n in nodes})
        threading.Thread(
            target=node_commands.stop_abandoned,
            args=(self.provider, node_commands.abandoned(places), self.settings.grace_seconds),
            name="stop-abandoned-commands",
            daemon=True,
        ).start()

    # -- storage on this host ---------------------------------------------------------------------------
    def _resolver(self, volume: Volume) -> Path:
        path = self.storage.local_path(volume)
        if path is None:
            raise launch.LaunchError("VolumeNotLocal", f"The {volume.label} is not on this host.")
        return path

    # -- jobs ------------------------------------------------------------------------------------------
    def _record_followers(self, session: Session) -> tuple[list[JobStart], list[tuple[JobStart, list[Started]]]]:
        """Record the staged jobs whose process the launcher started (or could not) as running (see
        ``Starter.record_followers``): those jobs, and those that started with their processes."""
        with self._lock:
            done = [
                start
                for start in self._staged.values()
                if start.follower is not None and start.follower.handle.done() and not start.follower.handle.cancelled()
            ]
        if not done:
            return [], []
        return done, self.starter.record_followers(session, done)

    def _watch_jobs(self, session: Session, followed: set[int]) -> datetime | None:
        """Settle ended tasks, act on stop requests and wall-clock limits; the next deadline, if any.

        One query reads every active job's tasks. A job whose tasks all ended normally is finished in a
        few statements (``_finish_in_sql``, the common case); a job with anything else to do (a stop
        request, a limit reached, a failed or lost task while others run) is loaded and settled."""
        deadline: datetime | None = None
        connection = session.connection()
        now = self.clock()
        by_job: dict[int, list[Any]] = {}
        for row in statements.ACTIVE_TASKS.run(connection):
            by_job.setdefault(row.job_id, []).append(row)
        with self._lock:
            launching = by_job.keys() & self._launching
            staged = (by_job.keys() & self._staged.keys()) - launching - followed
            pending = self._launching | self._staged.keys()
        self._limits = {k: v for k, v in self._limits.items() if k in by_job or k in pending}
        for job_id in staged:  # asked to stop (terminating): its start is called off, unless it has started
            if not self._unstage(job_id):
                launching.add(job_id)  # started: looked at once its start is recorded
        attention: list[int] = []
        for job_id, rows in by_job.items():
            if job_id in launching:  # a launch thread has not recorded its processes yet
                if rows[0].stop_reason is not None or rows[0].execution_state == JobState.TERMINATING:
                    with self._lock:
                        self._looked_past_launching = True  # asked to stop meanwhile: look after the launch
                continue
            head = rows[0]
            limit = self._wall_clock_deadline(connection, head)
            if limit is not None and head.stop_reason is None and now >= limit:
                attention.append(job_id)
                continue
            if limit is not None:
                deadline = limit if deadline is None else min(deadline, limit)
            if head.stop_reason is not None or head.execution_state == JobState.TERMINATING:
                attention.append(job_id)
                continue
            ended, running, simple = self._poll_tasks(rows)
            if not simple or (ended and running) or (not ended and not running):
                attention.append(job_id)
            elif ended:
                self._finish_in_sql(connection, head, rows, ended)
        if attention:
            ctx = self._ctx(session)
            for job in session.scalars(
                select(Job).filter(Job.id.in_(attention)).options(selectinload(Job.tasks))
            ).all():
                self._watch_job(ctx, job)
            session.flush()
        return deadline

    def _poll_tasks(self, rows: list[Any]) -> tuple[dict[int, Outcome], list[Any], bool]:
        """The tasks that ended (by task id), those still running, and whether every ending was a plain
        exit (an exit code recorded, no node lost, no task without a process)."""
        ended: dict[int, Outcome] = {}
        running: list[Any] = []
        for row in rows:
            if row.finished_at is not None and endings.ended_oddly(row.info):
                return ended, running, False  # (a task that vanished or lost its node: see _finish)
            if row.task_id is None or row.finished_at is not None:
                continue
            handle = supervisor.from_info(row.info)
            if handle is None:
                return ended, running, False  # started unrecorded, or never started: see _settle
            outcome = self.provider.poll(handle)
            with self._lock:
                being_stopped = row.task_id in self._stopping
            if outcome is None or being_stopped:
                running.append(row)
            elif outcome.exit_code is None or outcome.node_lost:
                return ended, running, False
            else:
                ended[row.task_id] = outcome
        return ended, running, True

    def _finish_in_sql(self, connection: Connection, head: Any, rows: list[Any], ended: dict[int, Outcome]) -> None:
        """A job whose every task just exited: record the exits, free its nodes, and end it (when the last
        task ended, if their exit files say: the server may have been down then)."""
        now = self.clock()
        ends = [o.ended_at for o in ended.values()]
        if ends and None not in ends:
            now = min(now, datetime.fromtimestamp(max(e for e in ends if e is not None), tz=UTC))
        statements.TASK_ENDED.run(
            connection, [{"tid": tid, "code": o.exit_code, "at": now} for tid, o in ended.items()]
        )
        statements.FREE_NODES_OF_JOB.run(connection, {"jid": head.job_id, "now": now})
        self.provider.unreserve(gang(head.job_id, head.attempts))
        codes = {r.rank: ended[r.task_id].exit_code if r.task_id in ended else r.exit_code for r in rows}
        failed = [r for r in rows if not r.info.get("auxiliary") and codes[r.rank] != 0]
        master: dict[str, Any] = next((r.info for r in rows if r.rank == 0), {})
        ending = endings.SUCCEEDED
        if failed:
            worst = endings.first_failure(failed)
            stderr = endings.stderr_tail(worst.info.get("stderr") or master.get("stderr"))
            ending = endings.failed(endings.exit_error(worst.rank, codes[worst.rank], stderr), codes[worst.rank])
        changed = job_service.switch_state_row(
            connection, head.job_id, head, ending.state, now, error=ending.error, exit_code=ending.exit_code
        )
        if not changed:
            raise StaleDataError(f"job {head.job_id} changed while it was being finished")
        append_log(master.get("execution_log"), now, ending.message)

    def _watch_job(self, ctx: Ctx, job: Job) -> None:
        limit = self._wall_clock_deadline(ctx.session.connection(), job)
        if limit is not None and job.stop_reason is None and self.clock() >= limit:
            job.stop_reason = "wallclock"
        if job.execution_state == JobState.TERMINATING and job.stop_reason is None:
            job.stop_reason = "user"
        self._settle(ctx, job)

    def _wall_clock_deadline(self, connection: Connection, job: Any) -> datetime | None:
        """When a running job's maxWallClockTime ends (``job``: a row or a Job with id and start_time)."""
        if job.start_time is None:
            return None
        job_id = getattr(job, "job_id", None) or job.id
        if job_id not in self._limits:  # (known already for the jobs this engine started or staged)
            spec = statements.JOB_SPEC.run(connection, {"jid": job_id}).scalar_one()
            self._limits[job_id] = _wall_clock_limit(spec)
        deadline: datetime = job.start_time + self._limits[job_id]
        return deadline

    def _settle(self, ctx: Ctx, job: Job) -> None:
        running = []
        for task in job.tasks:
            if task.finished_at is not None:
                continue
            handle = supervisor.from_info(task.info) or self._unrecorded(ctx.session, job, task)
            outcome = self.provider.poll(handle) if handle is not None else Outcome(None)
            with self._lock:
                being_stopped = task.id in self._stopping
            if outcome is None or being_stopped:
                running.append(task)
                continue
            task.exit_code = outcome.exit_code
            task.finished_at = self.clock()
            if handle is None:  # marked to start, but no process ever started (the server stopped first)
                task.info = {**task.info, "never_started": True}
            elif outcome.exit_code is None:
                task.info = {**task.info, "vanished": True, **({"node_lost": True} if outcome.node_lost else {})}
            node = ctx.session.get(Node, task.node_id) if outcome.node_lost and task.node_id else None
            if node is not None:  # before its job frees it: a lost node must never be scheduled again
                self.nodes.lose(ctx.session, node.cluster, node, agent_died=outcome.agent_lost)
        failed = [t for t in endings.essential(job.tasks) if t.finished_at is not None and t.exit_code != 0]
        # Parameter servers (auxiliary) never end by themselves: they stop once the workers are done.
        done = not endings.essential(running)
        if running and (job.stop_reason is not None or failed or done):
            for task in running:
                if job.stop_reason is None and not task.info.get("stopped"):  # ended by another task's end
                    task.info = {**task.info, "stopped": True}
                self._stop_task_async(task)
            return
        if running:
            return
        self._finish(ctx, job)

    def _unrecorded(self, session: Session, job: Job, task: Task) -> Handle | None:
        """A task that started but was never recorded (the server died in between): found by its pid file,
        recorded now and watched, so that it is neither lost nor left running unseen."""
        node = session.get(Node, task.node_id) if task.node_id is not None else None
        if node is None:
            return None
        job_temp = launch.job_temp_dir(self.provider.node_dir(node.cluster_id, node.name), job.id)
        exit_file = launch.exit_file(job_temp, task.index, job.attempts)
        handle = supervisor.find(exit_file, str(node.info.get("ray_node_id", "")))
        if handle is not None:
            task.pid, task.pid_start, task.started_at = handle.pid, handle.start, task.started_at or self.clock()
            task.info = {**task.info, **supervisor.as_info(handle), "node": node.name}
            self._watch(handle)
            log.info("job %s: found task %s that started unrecorded (pid %s)", job.name, task.index, handle.pid)
        return handle

    def _stop_task_async(self, task: Task) -> None:
        # Plain values only in the thread: the pass's ORM objects expire with its transaction (which may roll
        # back), and a task left in ``_stopping`` would never be looked at again.
        handle, task_id = supervisor.from_info(task.info), task.id
        with self._lock:
            if handle is None or task_id in self._stopping:
                return
            self._stopping.add(task_id)

        def stop() -> None:
            try:
                self.provider.stop(handle, self.settings.grace_seconds)
            finally:
                with self._lock:
                    self._stopping.discard(task_id)
                self.wake()

        threading.Thread(target=stop, name=f"stop-{handle.pid}", daemon=True).start()

    def stop_job_now(self, job_id: int) -> None:
        """Stop a job's processes before its rows go away (deleting a job or a parent); blocks."""
        started = not self._unstage(job_id)  # (a staged job's start is called off, unless it has started)
        with self._launched:  # a job being launched: its processes are known once they are recorded
            self._launched.wait_for(lambda: job_id not in self._launching, timeout=60)
            if started:
                self._launched.wait_for(lambda: job_id not in self._staged, timeout=60)
        with self.db.session() as session:
            tasks = session.scalars(select(Task).filter(Task.job_id == job_id, Task.finished_at.is_(None))).all()
            handles = [h for h in (supervisor.from_info(t.info) for t in tasks) if h is not None]
            attempts = session.scalar(select(Job.attempts).filter(Job.id == job_id))
        if attempts:
            self.provider.unreserve(gang(job_id, attempts))
        threads = [threading.Thread(target=self.provider.stop, args=(h, self.settings.grace_seconds)) for h in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run_on_node(self, target: NodeTarget, command: str, timeout: float) -> CommandResult:
        """A command on a node, waited for (``node_commands.run``); it runs beside the node's jobs. At most
        ``MAX_NODE_COMMANDS`` at once: each holds one of the API's worker threads while it runs."""
        if not self._node_commands.acquire(blocking=False):
            raise TooManyRequests(
                f"{MAX_NODE_COMMANDS} commands already run on nodes; try again when one has ended.",
                target="command",
            )
        try:
            base_env = dict(self.settings.base_env)
            return node_commands.run(self.provider, base_env, target, command, timeout, self.settings.grace_seconds)
        finally:
            self._node_commands.release()

    def release_cluster(self, cluster_id: int, nodes: list[tuple[str, dict[str, Any]]]) -> None:
        """After a cluster is deleted: stop its setup tasks and remove its nodes' work areas."""
        self.nodes.release_cluster(cluster_id, nodes)

    def release_job(self, cluster_id: int, job_id: int) -> None:
        """After a job is deleted: remove its directory on the cluster's shared storage."""
        job_dirs.remove(launch.shared_job_temp_dir(self.provider.shared_dir(cluster_id), job_id))

    def release_file_server(self, file_server_id: int) -> None:
        """Remove a file server's directory (its data) on this host."""
        shutil.rmtree(file_server_dir(self.settings.home, file_server_id), ignore_errors=True)

    def _finish(self, ctx: Ctx, job: Job) -> None:
        """All tasks ended: the job's final state follows from why it stopped and how its tasks ended
        (``endings.tell``)."""
        self._free_nodes(ctx.session, job)
        self.provider.unreserve(gang(job.id, job.attempts))
        reason = job.stop_reason
        lost = [t for t in job.tasks if t.info.get("node_lost")]
        if reason is None and lost:
            cluster = ctx.session.get_one(Cluster, job.cluster_id)
            reason = self.nodes.lost_reason(cluster, job)
            job.notes = {**job.notes, "lost_node": describe_node(str(lost[0].info.get("node")), lost[0].info)}
        ending = endings.tell(
            job.tasks, reason, job.notes, job.spec, requeue_allowed=job.attempts < self.settings.max_attempts
        )
        self._log(job, ending.message)
        if ending.state == JobState.QUEUED:
            log.info("job %s (%s) %s", job.name, job.id, ending.message.removeprefix("The job was "))
            for task in list(job.tasks):
                ctx.session.delete(task)
            job.tasks.clear()
            job.stop_reason = None
            job.notes = {k: v for k, v in job.notes.items() if k not in ("lost_node", "launch_error")}
        job_service.switch_state(ctx, job, ending.state, error=ending.error, exit_code=ending.exit_code)

    def _free_nodes(self, session: Session, job: Job) -> None:
        """The job's nodes are free (``statements.FREE_NODES_OF_JOB``), and so are the Node rows loaded."""
        session.execute(
            statements.FREE_NODES_OF_JOB.statement,
            {"jid": job.id, "now": self.clock()},
            execution_options={"synchronize_session": "fetch"},
        )

    def _log(self, job: Job, message: str) -> None:
        job_log(job, self.clock(), message)

    # -- scheduling ------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Load queued jobs and free nodes, decide (pure), apply; then start the processes outside any
        transaction and record them. A crash in between leaves running jobs without processes: the next
        start queues them again (nothing of them ran), up to ``max_attempts`` starts."""
        with self.db.session() as session:
            starts = self._decide_and_mark(session)
        self._hand_off(starts)

    def _hand_off(self, starts: list[JobStart]) -> None:
        """Give jobs just marked running to the launch threads: starting processes waits on the provider
        (and on the file system), which the next pass need not wait for. With one thread a pass's jobs go
        together (recorded in one transaction); with more, each job on its own."""
        if not starts:
            return
        with self._lock:
            self._launching.update(start.job_id for start in starts)
        for batch in [starts] if len(self._launch_threads) <= 1 else [[start] for start in starts]:
            self._launches.put(functools.partial(self._launch, batch))

    def _launch_loop(self) -> None:
        """A launch thread: does the work handed to the launch threads, in order (``_launch``, and what follows
        the record of a staged job's start)."""
        while (work := self._launches.get()) is not None:
            work()

    def _launch(self, starts: list[JobStart]) -> None:
        """Start the processes of jobs handed off and record them; staged jobs wait for their turn."""
        unprepared: list[JobStart] = []
        try:
            unprepared = self.starter.start_jobs(starts)
        except Exception:  # the next passes find what started by its pid files
            log.exception("starting jobs %s failed", [start.job_id for start in starts])
        if unprepared:  # they start the usual way once a node is free (their errors are reported then)
            self._unstageable.update(start.job_id for start in unprepared)
            with self.db.session() as session:
                for start in unprepared:
                    self._revert_staged(session, start.job_id)
        with self._launched:
            staged = [start for start in starts if start.follower is not None]
            self._staged.update((start.job_id, start) for start in staged)
            self._launching.difference_update(start.job_id for start in starts)
            self._launched.notify_all()
            look_again, self._looked_past_launching = self._looked_past_launching, False
            if any(self._outranked_since(start) for start in staged):
                self._outranked = look_again = True  # a job queued meanwhile takes its place (job_queued)
        if look_again:
            self.wake()
        elif self.settings.stage_jobs and any(start.after is None for start in starts):
            self._all_busy = False  # its nodes may be staged on, now that its processes are recorded
            self.wake(queued=True)

    def _pending(self) -> set[int]:
        """The jobs being started or staged."""
        with self._lock:
            return self._launching | self._staged.keys()

    def _unstage(self, job_id: int) -> bool:
        """Call off the start of a staged job: True if its process will never start (or it is not staged);
        False if it started, or may have (the next pass records it: wait for ``_staged`` to let go)."""
        with self._launched:
            self._launched.wait_for(lambda: job_id not in self._launching, timeout=60)
            start = self._staged.get(job_id)
        if start is None or start.follower is None:
            return True
        if not self.provider.cancel(start.follower):
            return False
        with self._launched:
            self._staged.pop(job_id, None)
            self._launched.notify_all()
        return True

    def _decide_and_mark(self, session: Session) -> list[JobStart]:
        """Load queued jobs and free nodes, decide (pure: ``matching.place``), and mark the jobs that start as
        running on their nodes, with a task per process; their processes start once this transaction commits.
        The jobs next in line are staged on busy nodes, to start as the jobs there end (``JobState.STAGED``)."""
        queued_count = self._queued_count  # (before the line is read: see _outranked_since)
        if self._outranked:
            self._outranked = False
            self._unstage_outranked(session)
        line = self._load_line(session.connection())
        self._all_busy = not line.nodes and not line.busy
        if not line.queued:
            return []
        capacity = {cluster_id: cluster_service.capacity(row.spec) for cluster_id, row in line.clusters.items()}
        decision = place(line.queued, line.free, line.stageable, self.settings.max_skips, capacity)
        if decision.skipped:
            statements.SET_SKIPS.run(
                session.connection(), [{"jid": job_id, "count": n} for job_id, n in decision.skipped.items()]
            )
        self._all_busy = decision.placed() == len(line.nodes) + sum(len(n) for n in line.stageable.values())
        if not decision.starts and not decision.staged:
            return []
        return self._mark(session, line, decision, queued_count)

    def _load_line(self, connection: Connection) -> _Line:
        """What a pass decides on: the free nodes, the busy nodes a job may be staged on, their clusters (those
        jobs may be scheduled on), and the head of each of those clusters' lines."""
        nodes = {row.id: row for row in statements.FREE_NODES.run(connection)}
        busy = self._stageable_nodes(connection)
        if not nodes and not busy:
            return _Line(nodes, busy, {}, {}, {}, [])
        candidates = {row.cluster_id for row in [*nodes.values(), *busy.values()]}
        clusters = {
            row.id: row
            for cluster_id in candidates
            for row in statements.SCHEDULABLE_CLUSTER.run(connection, {"cid": cluster_id})
        }
        free: dict[int, list[int]] = {}
        for row in nodes.values():
            if row.cluster_id in clusters:
                free.setdefault(row.cluster_id, []).append(row.id)
        stageable: dict[int, list[int]] = {}
        for row in busy.values():
            if row.cluster_id in clusters and cluster_service.stageable(clusters[row.cluster_id]):
                stageable.setdefault(row.cluster_id, []).append(row.id)
        queued = [
            # The query orders the line (priority, then first come first served): its position is the order.
            QueuedJob(r.id, int(r.cluster_id), r.priority, (float(position), r.id), r.node_count, r.skips)
            for cluster_id in free.keys() | stageable.keys()
            for position, r in enumerate(
                statements.QUEUE_HEAD.run(
                    connection,
                    {
                        "cid": cluster_id,
                        "window": self._window(len(free.get(cluster_id, [])) + len(stageable.get(cluster_id, []))),
                    },
                )
            )
        ]
        return _Line(nodes, busy, clusters, free, stageable, queued)

    def _mark(self, session: Session, line: _Line, decision: Decision, queued_count: int) -> list[JobStart]:
        """Mark the jobs decided on: running on their free nodes, or staged on a busy one; what starting each
        needs. A job the API changed since the line was read (terminated, deleted) is left to the next pass."""
        connection = session.connection()
        sizes: dict[int, int] = {}
        if self.provider.gpus:  # only GPU shares need the cluster sizes
            sizes = dict(session.execute(select(Node.cluster_id, func.count()).group_by(Node.cluster_id)).all())
        now = self.clock()
        ids = [*decision.starts, *decision.staged]
        rows = {**line.nodes, **line.busy}
        jobs = {row.id: row for job_id in ids for row in statements.JOB_TO_START.run(connection, {"jid": job_id})}
        starts = []
        stopped: set[int] = set()  # clusters whose staging stopped at a job of several processes
        for job_id in ids:
            job = jobs.get(job_id)
            if job is None or job.execution_state != JobState.QUEUED.value:
                continue
            cluster = line.clusters[job.cluster_id]
            processes = distributed.layout(job.spec)
            after: Handle | None = None
            ahead = 0  # the job a staged job follows on its node
            if job_id in decision.staged:
                node_ids = [decision.staged[job_id]]
                after = supervisor.from_info(line.busy[node_ids[0]].task_info)
                ahead = line.busy[node_ids[0]].job_id
                if len(processes) != 1 or job_id in self._unstageable or cluster.id in stopped:
                    stopped.add(cluster.id)  # (the line stays in order: it starts once a node is free)
                    continue
            else:
                node_ids = decision.starts[job_id]
                self._unstageable.discard(job_id)
            attempts = job.attempts + 1
            state = JobState.STAGED if after is not None else JobState.RUNNING
            if not job_service.switch_state_row(connection, job_id, job, state, now, attempts=attempts):
                continue  # the API changed it meanwhile (e.g. terminated): the next pass sees it
            self._limits[job_id] = _wall_clock_limit(job.spec)
            if after is None:
                statements.TAKE_NODE.run(connection, [{"nid": n, "jid": job_id, "now": now} for n in node_ids])
            elif (
                statements.STAGE_ON_NODE.run(connection, {"nid": node_ids[0], "ahead": ahead, "jid": job_id}).rowcount
                != 1
            ):
                raise StaleDataError(f"node {node_ids[0]} changed while job {job_id} was staged on it")
            statements.ADD_TASK.run(
                connection,
                [{"jid": job_id, "nid": node_ids[p.node], "rank": p.rank, "role": process_info(p)} for p in processes],
            )
            servers: dict[str, Path] = {}
            if (job.spec.get("mountVolumes") or {}).get("fileServers"):
                with contextlib.suppress(launch.LaunchError):  # reported when the mount is made
                    servers = self._file_servers(session, job.spec)
            slots = self._slots(cluster.id, [rows[n] for n in node_ids], sizes.get(cluster.id, 1))
            starts.append(
                JobStart(
                    job_id,
                    job.spec,
                    job.output_segment,
                    cluster.name,
                    cluster.spec,
                    attempts,
                    slots,
                    servers,
                    processes,
                    after=after,
                    ahead=ahead,
                    errors=list(job.errors or []),
                    cluster_id=cluster.id,
                    priority=job.priority,
                    queued_count=queued_count,
                )
            )
        return starts

    def _slots(self, cluster_id: int, nodes: list[Any], cluster_size: int) -> list[launch.NodeSlot]:
        """A job's nodes (rows of ``statements.FREE_NODES`` or ``STAGEABLE_NODES``), in the job's order."""
        return [
            launch.NodeSlot(
                node.name,
                self.provider.node_dir(cluster_id, node.name),
                self.provider.shared_dir(cluster_id),
                index,
                self.provider.gpus_for(node.info, node.node_index, cluster_size),
                self.provider.address(node.info),
                tuple(sorted(self.nodes.keys(node).items())),
            )
            for index, node in enumerate(nodes)
        ]

    def job_queued(self, cluster_id: int, priority: int) -> None:
        """A job queued with a higher priority than a job staged on its cluster takes that job's place (the next
        pass calls the staged job's start off, unless it has started, and stages the new one)."""
        with self._lock:
            self._queued_count += 1
            self._last_queued[(cluster_id, priority)] = self._queued_count
            outranks = any(s.cluster_id == cluster_id and s.priority < priority for s in self._staged.values())
        if outranks:
            self._outranked = True
            self.wake()

    def _outranked_since(self, start: JobStart) -> bool:
        """Whether a job of a higher priority was queued on a staged job's cluster after the pass that staged it
        looked at the line (the caller holds the lock)."""
        return any(
            cluster_id == start.cluster_id and priority > start.priority and count > start.queued_count
            for (cluster_id, priority), count in self._last_queued.items()
        )

    def _unstage_outranked(self, session: Session) -> None:
        """Staged jobs with a lower priority than the head of their cluster's line wait in line again."""
        with self._lock:
            staged = list(self._staged.values())
        for cluster_id in {start.cluster_id for start in staged}:
            head = statements.QUEUE_HEAD.run(session.connection(), {"cid": cluster_id, "window": 1}).first()
            outranked = [
                s for s in staged if s.cluster_id == cluster_id and head is not None and s.priority < head.priority
            ]
            for start in outranked:
                if self._unstage(start.job_id):
                    self._revert_staged(session, start.job_id)

    def _stageable_nodes(self, connection: Connection) -> dict[int, Any]:
        """Busy nodes a job may be staged on (``statements.STAGEABLE_NODES``) whose job's process the provider
        can have a process follow; none when staging is off."""
        if not self.settings.stage_jobs:
            return {}
        rows = {}
        for row in statements.STAGEABLE_NODES.run(connection):
            handle = supervisor.from_info(row.task_info)
            if handle is not None and self.provider.follows(handle):
                rows[row.id] = row
        return rows

    def _window(self, free_nodes: int) -> int:
        """How far down a cluster's line a pass looks: far enough to backfill its free nodes with small
        jobs past big ones, never more than ``queue_window``; jobs further down move up in later passes."""
        return min(self.settings.queue_window, 8 * (free_nodes + 1))

    def _file_servers(self, session: Session, spec: dict[str, Any]) -> dict[str, Path]:
        """Host directories of the file servers a job mounts, resolved while a session is at hand."""
        resolve = file_server_path(self._ctx(session), self.settings.home)
        return {
            m["fileServer"]["id"]: resolve(m["fileServer"]["id"], "")
            for m in (spec.get("mountVolumes") or {}).get("fileServers") or []
        }


@dataclass(frozen=True)
class _Line:
    """What a pass decides on (``Engine._load_line``): rows of the free nodes and of the busy nodes a job may
    be staged on (by id), of their clusters (by id); the ids of those nodes by cluster; the queued jobs."""

    nodes: dict[int, Any]
    busy: dict[int, Any]
    clusters: dict[int, Any]
    free: dict[int, list[int]]
    stageable: dict[int, list[int]]
    queued: list[QueuedJob]


def _wall_clock_limit(spec: dict[str, Any]) -> timedelta:
    return parse_duration(spec.get("constraints", {}).get("maxWallClockTime", "P7D"))


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)
