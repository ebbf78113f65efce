"""The engine: one background loop that makes the world match what the API recorded.

Each pass: clusters (nodes toward their target, setup tasks, auto-scale), running jobs (finished
processes, stop requests, wall-clock limits), then scheduling (load queued jobs and free nodes, decide,
apply, launch). The API wakes it on every change; finished processes wake it too; otherwise it sleeps
until the next wall-clock deadline or a short tick. On start it re-attaches to processes that still run.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from batchai.models.base import parse_duration
from batchai.providers.base import NodeProvider
from batchai.providers.local import make_link
from batchai.runtime import launch, supervisor
from batchai.runtime.supervisor import Handle, Outcome
from batchai.scheduler.matching import QueuedJob, decide
from batchai.services import clusters as cluster_service
from batchai.services import jobs as job_service
from batchai.services.context import Ctx
from batchai.services.mounts import file_server_row
from batchai.states import JobState
from batchai.storage.base import StorageBackend, Volume
from batchai.store.db import Database
from batchai.store.tables import Cluster, Job, Node, Task

log = logging.getLogger("batchai.engine")


class NodeState:
    PREPARING = "preparing"
    IDLE = "idle"
    RUNNING = "running"
    LEAVING = "leaving"
    UNUSABLE = "unusable"


@dataclass(frozen=True)
class EngineSettings:
    home: Path
    default_python: str
    grace_seconds: float = 10.0
    tick_seconds: float = 1.0
    max_skips: int = 5
    base_env: tuple[tuple[str, str], ...] = ()


def _handle(info: dict[str, Any]) -> Handle | None:
    if not info.get("pid"):
        return None
    return Handle(int(info["pid"]), float(info.get("start", 0.0)), Path(info["exit_file"]))


def _handle_info(handle: Handle) -> dict[str, Any]:
    return {"pid": handle.pid, "start": handle.start, "exit_file": str(handle.exit_file)}


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

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._recover()
        self._thread = threading.Thread(target=self._run, name="batchai-engine", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop; processes keep running and are re-attached at the next start."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                timeout = self.step()
            except StaleDataError:
                timeout = 0.0  # the API changed a job meanwhile: look again at once
            except Exception:
                log.exception("engine pass failed")
                timeout = self.settings.tick_seconds
            self._wake.wait(timeout)

    def step(self) -> float:
        """One pass over everything; returns how long the loop may sleep."""
        self._sync_clusters()
        deadline = self._watch_jobs()
        self._schedule()
        now = self.clock()
        sleep = self.settings.tick_seconds
        if deadline is not None:
            sleep = max(0.01, min(sleep, (deadline - now).total_seconds()))
        return sleep

    def _ctx(self, session: Session) -> Ctx:
        return Ctx(session=session, storage=self.storage, clock=self.clock)

    def _watch(self, handle: Handle) -> None:
        """Wake the loop when the process ends."""

        def wait() -> None:
            self.provider.wait(handle)
            self.wake()

        threading.Thread(target=wait, name=f"wait-{handle.pid}", daemon=True).start()

    # -- recovery --------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Re-attach to every process recorded as running; the next pass settles those that ended."""
        with self.db.session() as session:
            for task in session.scalars(select(Task).filter(Task.exit_code.is_(None), Task.finished_at.is_(None))):
                handle = _handle(task.info)
                if handle is not None:
                    self._watch(handle)
            for node in session.scalars(select(Node).filter(Node.state == NodeState.PREPARING)):
                handle = _handle(node.info.get("setup") or {})
                if handle is not None:
                    self._watch(handle)

    # -- clusters --------------------------------------------------------------------------------------
    def _resolver(self, volume: Volume) -> Path:
        path = self.storage.local_path(volume)
        if path is None:
            raise launch.LaunchError("VolumeNotLocal", f"The {volume.label} is not on this host.")
        return path

    def _file_server_path(self, session: Session) -> Callable[[str, str], Path]:
        def resolve(resource_id: str, source: str) -> Path:
            row = file_server_row(self._ctx(session), resource_id, "fileServer.id")
            root = self.settings.home / "fileservers" / str(row.id)
            root.mkdir(parents=True, exist_ok=True)
            return root / source.strip("/") if source.strip("/") else root

        return resolve

    def _desired_nodes(self, session: Session, cluster: Cluster) -> int:
        scale = cluster.spec["scaleSettings"]
        if "manual" in scale:
            return int(scale["manual"]["targetNodeCount"])
        auto = scale["autoScale"]
        queued = session.scalars(
            select(Job).filter(Job.cluster_id == cluster.id, Job.execution_state == JobState.QUEUED)
        ).all()
        busy = sum(1 for n in cluster.nodes if n.job_id is not None)
        need = busy + sum(j.node_count for j in queued)
        return max(int(auto["minimumNodeCount"]), min(int(auto["maximumNodeCount"]), need))

    def _sync_clusters(self) -> None:
        with self.db.session() as session:
            for cluster in session.scalars(select(Cluster).filter(Cluster.provisioning_state != "deleting")).all():
                self._sync_cluster(session, cluster)

    def _sync_cluster(self, session: Session, cluster: Cluster) -> None:
        now = self.clock()
        target = self._desired_nodes(session, cluster)
        nodes = [n for n in cluster.nodes if n.state != NodeState.LEAVING]
        if len(nodes) < target:
            used = {n.index for n in cluster.nodes}
            for _ in range(target - len(nodes)):
                index = next(i for i in range(len(used) + 1) if i not in used)
                used.add(index)
                node = Node(
                    cluster_id=cluster.id,
                    name=f"node-{index}",
                    index=index,
                    state=NodeState.PREPARING,
                    state_time=now,
                    info={},
                    errors=[],
                )
                session.add(node)
                cluster.nodes.append(node)
            session.flush()
        elif len(nodes) > target:
            self._shrink(session, cluster, nodes, len(nodes) - target)
        for node in list(cluster.nodes):
            if node.state == NodeState.PREPARING:
                self._prepare(session, cluster, node)
            elif node.state == NodeState.LEAVING and node.job_id is None:
                self._remove_node(session, cluster, node)
        steady = len([n for n in cluster.nodes if n.state != NodeState.LEAVING]) == target and not any(
            n.state in (NodeState.PREPARING, NodeState.LEAVING) for n in cluster.nodes
        )
        state = "steady" if steady else "resizing"
        if cluster.allocation_state != state:
            cluster.allocation_state = state
            cluster.allocation_state_time = now

    def _shrink(self, session: Session, cluster: Cluster, nodes: list[Node], count: int) -> None:
        """Remove ``count`` nodes: unusable, idle and preparing ones first, then busy ones as
        ``nodeDeallocationOption`` says (requeue or terminate their jobs, or wait for them)."""
        rank = {NodeState.UNUSABLE: 0, NodeState.IDLE: 1, NodeState.PREPARING: 2, NodeState.RUNNING: 3}
        victims = sorted(nodes, key=lambda n: (rank.get(n.state, 4), -n.index))[:count]
        option = (cluster.spec["scaleSettings"].get("manual") or {}).get("nodeDeallocationOption", "requeue")
        for node in victims:
            if node.job_id is None:
                self._remove_node(session, cluster, node)
                continue
            node.state = NodeState.LEAVING
            node.state_time = self.clock()
            job = session.get(Job, node.job_id)
            if job is not None and option in ("requeue", "terminate") and job.stop_reason is None:
                job.stop_reason = "requeue" if option == "requeue" else "deallocated"

    def _remove_node(self, session: Session, cluster: Cluster, node: Node) -> None:
        handle = _handle(node.info.get("setup") or {})
        if handle is not None:
            self.provider.stop(handle, self.settings.grace_seconds)
        self.provider.release_node(cluster.id, node.name)
        cluster.nodes.remove(node)
        session.delete(node)

    def setup_output_dir(self, cluster: Cluster, node: Node, prefix_env: dict[str, str]) -> Path:
        setup = cluster.spec["nodeSetup"]["setupTask"]
        prefix = launch.expand(setup["stdOutErrPathPrefix"], prefix_env)
        return Path(prefix) / cluster_service.setup_output_suffix(cluster) / node.name

    def _prepare(self, session: Session, cluster: Cluster, node: Node) -> None:
        """Provision a node and run its setup task; idle when done, unusable if it fails."""
        setup = (cluster.spec.get("nodeSetup") or {}).get("setupTask")
        info = dict(node.info)
        handle = _handle(info.get("setup") or {})
        if handle is None:
            node_dir = self.provider.node_dir(cluster.id, node.name)
            try:
                links, unmanaged = launch.cluster_mounts(
                    cluster.spec, node_dir / "mounts", self._resolver, self._file_server_path(session)
                )
                self.provider.prepare_node(cluster.id, node.name, links)
                for command, path in unmanaged:
                    _run_mount(command, path)
            except (launch.LaunchError, OSError, Exception) as exc:
                self._node_unusable(cluster, node, "NodePreparationFailed", f"Preparing {node.name} failed: {exc}")
                return
            if not setup:
                self._node_state(node, NodeState.IDLE)
                return
            env = {
                **dict(self.settings.base_env),
                "AZ_BATCHAI_MOUNT_ROOT": str(node_dir / "mounts"),
                "AZ_BATCHAI_NODE_NAME": node.name,
            }
            for variable in setup.get("environmentVariables") or []:
                env[variable["name"]] = launch.expand(variable["value"], env)
            for secret in setup.get("secrets") or []:
                if secret.get("value") is not None:
                    env[secret["name"]] = secret["value"]
            out_dir = self.setup_output_dir(cluster, node, env)
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                handle = self.provider.start(
                    node_dir / "setup" / "setup.sh",
                    f"cd {node_dir / 'setup'}\n{setup['commandLine']}",
                    env=env,
                    cwd=node_dir / "setup",
                    stdout=out_dir / "stdout.txt",
                    stderr=out_dir / "stderr.txt",
                    exit_file=node_dir / "setup" / "exit_code",
                )
            except OSError as exc:
                self._node_unusable(cluster, node, "SetupTaskFailed", f"The setup task could not start: {exc}")
                return
            info["setup"] = {**_handle_info(handle), "stderr": str(out_dir / "stderr.txt")}
            node.info = info
            self._watch(handle)
            return
        outcome = self.provider.poll(handle)
        if outcome is None:
            return
        setup_info = info.pop("setup", None) or {}
        node.info = info
        if outcome.exit_code == 0:
            self._node_state(node, NodeState.IDLE)
            return
        last = supervisor.tail(Path(setup_info["stderr"])) if setup_info.get("stderr") else []
        self._node_unusable(
            cluster,
            node,
            "SetupTaskFailed",
            f"The setup task on {node.name} failed with exit code {outcome.exit_code}.",
            last,
        )

    def _node_state(self, node: Node, state: str) -> None:
        node.state = state
        node.state_time = self.clock()

    def _node_unusable(
        self, cluster: Cluster, node: Node, code: str, message: str, last_lines: list[str] | None = None
    ) -> None:
        self._node_state(node, NodeState.UNUSABLE)
        error = {
            "code": code,
            "message": message,
            "details": [{"name": "node", "value": node.name}]
            + ([{"name": "stderr", "value": "\n".join(last_lines)}] if last_lines else []),
        }
        node.errors = [error]
        cluster.errors = [*(cluster.errors or []), error][-10:]
        log.warning("%s: %s", cluster.name, message)

    # -- jobs ------------------------------------------------------------------------------------------
    def _watch_jobs(self) -> datetime | None:
        """Settle ended tasks, act on stop requests and wall-clock limits; the next deadline, if any."""
        deadline: datetime | None = None
        with self.db.session() as session:
            ctx = self._ctx(session)
            active = session.scalars(
                select(Job).filter(Job.execution_state.in_([JobState.RUNNING, JobState.TERMINATING]))
            ).all()
            for job in active:
                limit = self._wall_clock_deadline(job)
                if limit is not None and job.stop_reason is None and self.clock() >= limit:
                    job.stop_reason = "wallclock"
                elif limit is not None:
                    deadline = limit if deadline is None else min(deadline, limit)
                if job.execution_state == JobState.TERMINATING and job.stop_reason is None:
                    job.stop_reason = "user"
                self._settle(ctx, job)
        return deadline

    @staticmethod
    def _wall_clock_deadline(job: Job) -> datetime | None:
        if job.start_time is None:
            return None
        limit = parse_duration(job.spec.get("constraints", {}).get("maxWallClockTime", "P7D"))
        return job.start_time + limit

    def _settle(self, ctx: Ctx, job: Job) -> None:
        running = []
        for task in job.tasks:
            if task.finished_at is not None:
                continue
            handle = _handle(task.info)
            outcome = self.provider.poll(handle) if handle is not None else Outcome(None)
            if outcome is None:
                running.append(task)
                continue
            task.exit_code = outcome.exit_code
            task.finished_at = self.clock()
            if outcome.exit_code is None:
                task.info = {**task.info, "vanished": True}
        failed = [t for t in job.tasks if t.finished_at is not None and t.exit_code != 0]
        if running and (job.stop_reason is not None or failed):
            for task in running:
                self._stop_task_async(task)
            return
        if running:
            return
        self._finish(ctx, job)

    def _stop_task_async(self, task: Task) -> None:
        handle = _handle(task.info)
        with self._lock:
            if handle is None or task.id in self._stopping:
                return
            self._stopping.add(task.id)

        def stop() -> None:
            try:
                self.provider.stop(handle, self.settings.grace_seconds)
            finally:
                with self._lock:
                    self._stopping.discard(task.id)
                self.wake()

        threading.Thread(target=stop, name=f"stop-{handle.pid}", daemon=True).start()

    def stop_job_now(self, job_id: int) -> None:
        """Stop a job's processes before its rows go away (deleting a job or a parent); blocks."""
        with self.db.session() as session:
            tasks = session.scalars(select(Task).filter(Task.job_id == job_id, Task.finished_at.is_(None))).all()
            handles = [h for h in (_handle(t.info) for t in tasks) if h is not None]
        threads = [threading.Thread(target=self.provider.stop, args=(h, self.settings.grace_seconds)) for h in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def release_cluster(self, cluster_id: int, nodes: list[tuple[str, dict[str, Any]]]) -> None:
        """After a cluster is deleted: stop its setup tasks and remove its nodes' work areas."""
        for name, info in nodes:
            handle = _handle(info.get("setup") or {})
            if handle is not None:
                self.provider.stop(handle, self.settings.grace_seconds)
            self.provider.release_node(cluster_id, name)
        shutil.rmtree(self.provider.shared_dir(cluster_id), ignore_errors=True)

    def _finish(self, ctx: Ctx, job: Job) -> None:
        """All tasks ended: the job's final state follows from why it stopped and how its tasks ended."""
        master = next((t for t in job.tasks if t.index == 0), None)
        reason = job.stop_reason
        stderr = Path(job.notes.get("stderr", "")) if job.notes.get("stderr") else None
        last = supervisor.tail(stderr) if stderr else []
        details = [{"name": "stderr", "value": "\n".join(last)}] if last else []
        code = master.exit_code if master else None
        self._free_nodes(ctx.session, job)
        if reason == "requeue":
            for task in list(job.tasks):
                ctx.session.delete(task)
            job.tasks.clear()
            job.stop_reason = None
            job_service.switch_state(ctx, job, JobState.QUEUED)
            self._log(job, "The job was requeued: its nodes left the cluster.")
            return
        error: dict[str, Any]
        if reason == "user":
            error = {"code": "JobTerminated", "message": "The job was terminated by the user."}
        elif reason == "wallclock":
            limit = job.spec.get("constraints", {}).get("maxWallClockTime")
            error = {
                "code": "MaxWallClockTimeExceeded",
                "message": f"The job ran longer than its maxWallClockTime ({limit}) and was stopped.",
            }
        elif reason == "cluster_deleted":
            error = {"code": "ClusterDeleted", "message": "The job's cluster was deleted."}
        elif reason == "deleted":
            error = {"code": "JobDeleted", "message": "The job was deleted."}
        elif reason == "deallocated":
            error = {
                "code": "NodeDeallocated",
                "message": "The job was terminated because its nodes were removed from the cluster.",
            }
        elif reason == "launch":
            error = dict(job.notes.get("launch_error") or {"code": "LaunchFailed", "message": "launch failed"})
        elif any(t.info.get("vanished") for t in job.tasks):
            error = {
                "code": "JobProcessesLost",
                "message": "The job's processes ended without recording an exit code (the server or node "
                "went away while it ran).",
            }
        else:
            failed = [t for t in job.tasks if t.exit_code != 0]
            if not failed:
                self._log(job, "The job succeeded.")
                job_service.switch_state(ctx, job, JobState.SUCCEEDED, exit_code=0)
                return
            worst = failed[0]
            code = worst.exit_code
            tail_text = f" Last lines of stderr: {' | '.join(last[-3:])}" if last else ""
            error = {
                "code": "JobFailed",
                "message": f"The job exited with code {worst.exit_code} (task {worst.index}).{tail_text}",
            }
        error["details"] = error.get("details") or details
        self._log(job, f"The job failed: {error['message']}")
        job_service.switch_state(ctx, job, JobState.FAILED, error=error, exit_code=code)

    def _free_nodes(self, session: Session, job: Job) -> None:
        for node in session.scalars(select(Node).filter(Node.job_id == job.id)):
            node.job_id = None
            if node.state == NodeState.RUNNING:
                self._node_state(node, NodeState.IDLE)

    def _log(self, job: Job, message: str) -> None:
        path = job.notes.get("execution_log")
        if not path:
            return
        try:
            with open(path, "a") as handle:
                handle.write(f"{self.clock().isoformat()} {message}\n")
        except OSError:
            pass

    # -- scheduling ------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        launches: list[int] = []
        with self.db.session() as session:
            queued_rows = session.scalars(
                select(Job)
                .join(Cluster, Job.cluster_id == Cluster.id)
                .filter(Job.execution_state == JobState.QUEUED, Cluster.provisioning_state != "deleting")
            ).all()
            if not queued_rows:
                return
            queued = [
                QueuedJob(
                    j.id, int(j.cluster_id or 0), j.priority, (j.created_at.timestamp(), j.id), j.node_count, j.skips
                )
                for j in queued_rows
            ]
            free: dict[int, list[int]] = {}
            for node in session.scalars(
                select(Node).filter(Node.state == NodeState.IDLE, Node.job_id.is_(None)).order_by(Node.index)
            ):
                free.setdefault(node.cluster_id, []).append(node.id)
            decision = decide(queued, free, self.settings.max_skips)
            ctx = self._ctx(session)
            for job_id, skips in decision.skipped.items():
                session.get_one(Job, job_id).skips = skips
            for job_id, node_ids in decision.starts.items():
                job = session.get_one(Job, job_id)
                job.attempts += 1
                job_service.switch_state(ctx, job, JobState.RUNNING)
                for index, node_id in enumerate(node_ids):
                    node = session.get_one(Node, node_id)
                    node.job_id = job.id
                    self._node_state(node, NodeState.RUNNING)
                    task = Task(job_id=job.id, node_id=node.id, index=index, info={})
                    session.add(task)
                    job.tasks.append(task)
                launches.append(job_id)
        for job_id in launches:
            self._launch(job_id)

    def _launch(self, job_id: int) -> None:
        """Start every task of a job that was just marked running; a launch error fails the job."""
        with self.db.session() as session:
            job = session.get_one(Job, job_id)
            cluster = session.get_one(Cluster, job.cluster_id)
            try:
                self._start_tasks(session, job, cluster)
            except launch.LaunchError as exc:
                job.notes = {**job.notes, "launch_error": {"code": exc.code, "message": exc.message}}
                job.stop_reason = "launch"
                for task in job.tasks:
                    if task.info.get("pid") is None:
                        task.finished_at = self.clock()
                        task.exit_code = None
                self._log(job, f"The job could not start: {exc.message}")
        self.wake()

    def _start_tasks(self, session: Session, job: Job, cluster: Cluster) -> None:
        nodes = {n.id: n for n in cluster.nodes}
        base_env = dict(self.settings.base_env)
        for task in sorted(job.tasks, key=lambda t: t.index):
            node = nodes[task.node_id or 0]
            slot = launch.NodeSlot(
                node.name,
                self.provider.node_dir(cluster.id, node.name),
                self.provider.shared_dir(cluster.id),
                task.index,
                self.provider.gpus_for(node.index, max(1, len(cluster.nodes))),
            )
            try:
                plan = launch.plan(
                    job_id=job.id,
                    spec=job.spec,
                    segment=job.output_segment,
                    cluster_spec=cluster.spec,
                    slot=slot,
                    base_env=base_env,
                    resolve=self._resolver,
                    file_server=self._file_server_path(session),
                    default_python=self.settings.default_python,
                )
                for link, target in plan.links:
                    make_link(link, target)
                for command, path in plan.unmanaged:
                    _run_mount(command, path)
                for directory in plan.directories:
                    directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise launch.LaunchError(
                    "JobPreparationFailed", f"Preparing the job's directories failed: {exc}"
                ) from exc
            command = launch.toolkit_command(job.spec, plan.env, self.settings.default_python)
            if plan.container:
                command = container_command(plan, command)
            if task.index == 0:
                job.notes = {
                    **job.notes,
                    "stderr": str(plan.stdouterr / plan.stderr_name),
                    "execution_log": str(plan.stdouterr / "execution.log"),
                }
                self._log(
                    job,
                    f"Job started on {len(job.tasks)} node(s) of cluster {cluster.name}; "
                    f"attempt {job.attempts}. {launch.describe(plan)}",
                )
            handle = self.provider.start(
                plan.job_temp / f"task-{task.index}.sh",
                launch.script_body(plan, command),
                env=plan.env,
                cwd=Path(plan.env["AZ_BATCHAI_JOB_TEMP"]),
                stdout=plan.stdouterr / plan.stdout_name,
                stderr=plan.stdouterr / plan.stderr_name,
                exit_file=plan.job_temp / f"task-{task.index}.exit",
            )
            task.pid = handle.pid
            task.pid_start = handle.start
            task.started_at = self.clock()
            task.info = {**_handle_info(handle), "node": node.name}
            session.flush()
            self._watch(handle)


def _run_mount(command: str, path: Path) -> None:
    """Run an unmanaged file system's mount command with the mount path appended, as Batch AI did."""
    import shlex
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        f"{command} {shlex.quote(str(path))}", shell=True, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise launch.LaunchError(
            "MountFailed", f"The mount command '{command}' failed with exit code {result.returncode}: {last[0]}"
        )


def container_command(plan: launch.LaunchPlan, command: str) -> str:
    """Run ``command`` in the job's container image with docker or podman; an error if neither runs here."""
    import shlex
    import shutil
    import subprocess

    image = (plan.container or {}).get("imageSourceRegistry", {}).get("image", "")
    for engine in ("docker", "podman"):
        binary = shutil.which(engine)
        if binary and subprocess.run([binary, "info"], capture_output=True, timeout=30).returncode == 0:
            mounts = " ".join(
                f"-v {shlex.quote(str(p))}:{shlex.quote(str(p))}"
                for p in {plan.job_temp, plan.stdouterr, *[t for _, t in plan.links]}
            )
            env = " ".join(f"-e {shlex.quote(k)}" for k in plan.env if k.startswith(("AZ_BATCHAI_", "CUDA_")))
            return (
                f"{binary} run --rm --network host {mounts} {env} -w {shlex.quote(plan.env['AZ_BATCHAI_JOB_TEMP'])} "
                f"{shlex.quote(image)} bash -c {shlex.quote(command)}"
            )
    raise launch.LaunchError(
        "ContainerEngineNotFound",
        f"The job asks for the container image '{image}' (containerSettings), but no container engine (docker or "
        "podman) runs on this node. Install one, or remove containerSettings to run on the host.",
    )
