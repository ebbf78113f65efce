"""Jobs: validation on create, and the rules of changing a job's execution state (``transition``)."""

from __future__ import annotations

import functools
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import contains_eager

from batchai.errors import Conflict, InvalidInput
from batchai.ids import check_name, experiment_id
from batchai.models.resources import JobInput
from batchai.models.wire import JobProperties
from batchai.runtime import distributed
from batchai.services import clusters, experiments, mounts, workspaces
from batchai.services.context import (
    Ctx,
    NodeTarget,
    find,
    find_to_delete,
    mark_deleting,
    refuse_if_deleting,
    require,
)
from batchai.services.node_rules import (
    MAX_PROCESSES_PER_NODE,
    MAX_WALL_CLOCK_DAYS,
    check_count,
    check_no_climbing,
    check_node_path,
    check_variables,
)
from batchai.states import PRIORITY_RANK, JobState, check_transition
from batchai.store.prepared import Prepared
from batchai.store.tables import Cluster, Experiment, Job, Node, ResourceGroup, Workspace

TOOLKITS = {
    "cntkSettings": "cntk",
    "pyTorchSettings": "pytorch",
    "tensorFlowSettings": "tensorflow",
    "caffeSettings": "caffe",
    "caffe2Settings": "caffe2",
    "chainerSettings": "chainer",
    "customToolkitSettings": "custom",
    "customMpiSettings": "custommpi",
    "horovodSettings": "horovod",
}
# Toolkits whose processCount defaults to nodeCount.
PROCESS_COUNT = {
    "cntkSettings",
    "pyTorchSettings",
    "caffeSettings",
    "chainerSettings",
    "customMpiSettings",
    "horovodSettings",
}
READ_ONLY = {
    "toolType",
    "jobOutputDirectoryPathSegment",
    "creationTime",
    "provisioningState",
    "provisioningStateTransitionTime",
    "executionState",
    "executionStateTransitionTime",
    "executionInfo",
}
DEFAULT_MAX_WALL_CLOCK = "P7D"
_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _check_ids(items: list[dict[str, Any]], where: str, reserved: set[str]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        ident = item["id"]
        if not _ID.match(ident):
            raise InvalidInput(
                f"The id '{ident}' is invalid: use letters, digits and '_' (it names AZ_BATCHAI_..._{ident}).",
                target=f"properties.{where}[{i}].id",
            )
        if ident.upper() in seen or ident.lower() in reserved:
            raise InvalidInput(f"The id '{ident}' is used twice or reserved.", target=f"properties.{where}[{i}].id")
        seen.add(ident.upper())


def _check_toolkit(spec: dict[str, Any], key: str) -> None:
    settings = spec[key]
    target = f"properties.{key}"
    most = MAX_PROCESSES_PER_NODE * spec["nodeCount"]
    if settings.get("processCount") is not None and settings["processCount"] < 1:
        raise InvalidInput("processCount must be 1 or more.", target=f"{target}.processCount")
    for count in ("processCount", "workerCount", "parameterServerCount"):
        if settings.get(count) is not None:
            check_count(settings[count], most, f"{count} ({MAX_PROCESSES_PER_NODE} per node)", f"{target}.{count}")
    if key in PROCESS_COUNT and settings.get("processCount") is None:
        settings["processCount"] = spec["nodeCount"]
    if key == "cntkSettings":
        # Without a languageType, a job with only a configFilePath is BrainScript (as Batch AI's recipes send it).
        brainscript = settings.get("configFilePath") and not settings.get("pythonScriptFilePath")
        language = (settings.get("languageType") or ("BrainScript" if brainscript else "Python")).lower()
        if language not in ("python", "brainscript"):
            raise InvalidInput("languageType must be Python or BrainScript.", target=f"{target}.languageType")
        settings["languageType"] = "Python" if language == "python" else "BrainScript"
        needed = "pythonScriptFilePath" if language == "python" else "configFilePath"
        if not settings.get(needed):
            raise InvalidInput(f"A CNTK {settings['languageType']} job needs {needed}.", target=f"{target}.{needed}")
    if key == "caffeSettings" and bool(settings.get("configFilePath")) == bool(settings.get("pythonScriptFilePath")):
        raise InvalidInput("Give exactly one of configFilePath and pythonScriptFilePath.", target=target)
    # Any case, kept as it was written (Batch AI showed "gloo" back as the recipes sent it).
    backend = settings.get("communicationBackend") if key == "pyTorchSettings" else None
    if backend and backend.lower() not in ("tcp", "gloo", "mpi", "nccl"):
        raise InvalidInput(
            "communicationBackend must be TCP, Gloo, MPI or NCCL.",
            target=f"{target}.communicationBackend",
        )
    if key == "tensorFlowSettings":
        for count in ("workerCount", "parameterServerCount"):
            if settings.get(count) is not None and settings[count] < (1 if count == "workerCount" else 0):
                raise InvalidInput(f"{count} is out of range.", target=f"{target}.{count}")
        if distributed.kind(spec) == "tensorflow":  # the counts it runs with, shown as Azure did
            workers, servers = distributed.tensorflow_counts(spec)
            settings["workerCount"], settings["parameterServerCount"] = workers, servers
    if key == "customToolkitSettings" and not (settings.get("commandLine") or "").strip():
        raise InvalidInput("customToolkitSettings.commandLine is required.", target=f"{target}.commandLine")


def build_spec(ctx: Ctx, props: JobProperties) -> tuple[dict[str, Any], clusters.ClusterRef]:
    """Check a job's properties against Batch AI's rules; the stored spec with defaults filled in."""
    spec = {k: v for k, v in props.wire().items() if k not in READ_ONLY}
    toolkits = [k for k in TOOLKITS if k in spec]
    if len(toolkits) != 1:
        raise InvalidInput(
            "Give exactly one toolkit block ("
            + ", ".join(TOOLKITS)
            + f"); this job has {len(toolkits)}"
            + (f": {', '.join(toolkits)}." if toolkits else "."),
            code="InvalidToolkit",
            target="properties",
        )
    if props.cluster is None:
        raise InvalidInput("cluster.id is required.", target="properties.cluster")
    if props.node_count is None:
        raise InvalidInput("nodeCount is required.", target="properties.nodeCount")
    check_node_path(props.std_out_err_path_prefix, "properties.stdOutErrPathPrefix")
    cluster = clusters.by_id(ctx, props.cluster.id, "properties.cluster.id")
    limit = clusters.capacity(cluster.spec)
    if props.node_count < 1 or props.node_count > limit:
        most = f"between 1 and {limit}, the most nodes cluster '{cluster.name}' can hold"
        if limit < 1:
            most = f"at least 1, and cluster '{cluster.name}' is sized to hold none: resize it (or let it auto-scale)"
        raise InvalidInput(f"nodeCount must be {most}.", code="InvalidNodeCount", target="properties.nodeCount")
    _check_toolkit(spec, toolkits[0])
    _check_ids(spec.get("inputDirectories") or [], "inputDirectories", set())
    _check_ids(spec.get("outputDirectories") or [], "outputDirectories", {"stdouterr"})
    for i, output in enumerate(spec.get("outputDirectories") or []):
        check_node_path(output.get("pathPrefix"), f"properties.outputDirectories[{i}].pathPrefix")
        check_no_climbing(output.get("pathSuffix") or "", f"properties.outputDirectories[{i}].pathSuffix")
    names: set[str] = set()
    for where in ("environmentVariables", "secrets"):
        check_variables(spec.get(where) or [], f"properties.{where}", names)
    for i, secret in enumerate(spec.get("secrets") or []):
        if secret.get("value") is None and not secret.get("valueSecretReference"):
            raise InvalidInput("A secret needs a value.", target=f"properties.secrets[{i}].value")
    preparation = spec.get("jobPreparation")
    if preparation is not None and not (preparation.get("commandLine") or "").strip():
        raise InvalidInput("jobPreparation.commandLine is required.", target="properties.jobPreparation.commandLine")
    wall = props.constraints.max_wall_clock_time if props.constraints else None
    if wall is not None and not timedelta(0) < wall <= timedelta(days=MAX_WALL_CLOCK_DAYS):
        raise InvalidInput(
            f"maxWallClockTime must be positive and at most {MAX_WALL_CLOCK_DAYS} days.",
            target="properties.constraints.maxWallClockTime",
        )
    spec.setdefault("constraints", {}).setdefault("maxWallClockTime", DEFAULT_MAX_WALL_CLOCK)
    spec["schedulingPriority"] = props.scheduling_priority or "normal"
    if spec.get("mountVolumes"):
        spec["mountVolumes"] = mounts.normalise(ctx, spec["mountVolumes"], "properties.mountVolumes")
    spec["cluster"] = {"id": props.cluster.id}
    return spec, cluster


class JobView(NamedTuple):
    """What showing a job reads, as plain values: a new job, or jobs read for a GET or a list (every poll of a
    job): reading these columns is cheaper than loading the job and its parents as objects."""

    id: int
    name: str
    spec: dict[str, Any]
    tool_type: str
    output_segment: str
    created_at: datetime
    provisioning_state: str
    provisioning_state_time: datetime
    execution_state: str
    execution_state_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    exit_code: int | None
    errors: list[Any]


_VIEW_COLUMNS = [getattr(Job, name) for name in JobView._fields]
# A job by its path as a JobView, with the names its experiment's ARM id is made of, in one query.
_VIEW_BY_PATH = workspaces.under_workspace(
    select(
        *_VIEW_COLUMNS,
        Experiment.name.label("experiment"),
        Workspace.name.label("workspace"),
        ResourceGroup.name.label("group"),
        ResourceGroup.subscription,
    )
    .select_from(Job)
    .join(Job.experiment)
    .where(Job.key == bindparam("job")),
    Experiment,
)
_VIEWS_IN_EXPERIMENT = (
    select(*_VIEW_COLUMNS).where(Job.experiment_id == bindparam("experiment_id")).order_by(Job.created_at, Job.id)
)
# A job by its path, with its experiment, workspace and group (what rendering it reads), in one query.
_BY_PATH = workspaces.under_workspace(
    select(Job)
    .join(Job.experiment)
    .options(contains_eager(Job.experiment).contains_eager(Experiment.workspace).contains_eager(Workspace.group))
    .where(Job.key == bindparam("job")),
    Experiment,
)
_INSERT = insert(Job)
_EXISTS = Prepared(select(Job.id).where(Job.experiment_id == bindparam("experiment_id"), Job.key == bindparam("key")))


def get(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str, name: str) -> Job:
    names = workspaces.path_names(sub, group, workspace, experiment)
    row: Job | None = ctx.session.scalars(_BY_PATH, {**names, "job": name.lower()}).first()
    if row is not None:
        return row
    parent = experiments.get(ctx, sub, group, workspace, experiment)  # says which part of the path is missing
    return require(ctx.session, Job, name, "job", experiment_id=parent.id)


def view(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str, name: str) -> tuple[JobView, str]:
    """A job by its path to show, with its experiment's ARM id; not found as ``get`` says it."""
    names = workspaces.path_names(sub, group, workspace, experiment)
    row = ctx.session.connection().execute(_VIEW_BY_PATH, {**names, "job": name.lower()}).first()
    if row is None:  # not found: ``get`` says which part of the path is missing
        found = get(ctx, sub, group, workspace, experiment, name)
        return _view_of(found), experiments.arm_id(found.experiment)
    parent = experiment_id(row.subscription, row.group, row.workspace, row.experiment)
    return JobView(*row[: len(JobView._fields)]), parent


def views_in_experiment(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str) -> tuple[list[JobView], str]:
    """An experiment's jobs to show, oldest first, with the experiment's ARM id."""
    parent = experiments.ref(ctx, sub, group, workspace, experiment)
    rows = ctx.session.connection().execute(_VIEWS_IN_EXPERIMENT, {"experiment_id": parent.id})
    return [JobView(*row) for row in rows], parent.arm_id


def _view_of(row: Job) -> JobView:
    return JobView(*(getattr(row, name) for name in JobView._fields))


def create(
    ctx: Ctx,
    sub: str,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    body: JobInput,
) -> tuple[JobView, str]:
    """Queue a new job. Jobs cannot change: PUT again returns the job if nothing differs, else 409.
    Returns the job to show and its experiment's ARM id; to change the job, load it with ``get``."""
    check_name("job", name)
    parent = experiments.ref(ctx, sub, group, workspace, experiment)
    spec, cluster = build_spec(ctx, body.properties)
    connection = ctx.session.connection()
    if _EXISTS.run(connection, {"experiment_id": parent.id, "key": name.lower()}).first():
        row = require(ctx.session, Job, name, "job", experiment_id=parent.id)
        refuse_if_deleting(row, "job")
        if row.spec != spec:
            raise Conflict(
                f"The job '{name}' exists; jobs cannot be changed (delete it, or use another name).",
                code="JobAlreadyExists",
                target=name,
            )
        return _view_of(row), parent.arm_id
    now = ctx.clock()
    toolkit = next(k for k in TOOLKITS if k in spec)
    values: dict[str, Any] = {
        "experiment_id": parent.id,
        "cluster_id": cluster.id,
        "name": name,
        "key": name.lower(),
        "spec": spec,
        "tool_type": TOOLKITS[toolkit],
        "priority": PRIORITY_RANK[spec["schedulingPriority"]],
        "node_count": spec["nodeCount"],
        "output_segment": f"{sub}/{group}/workspaces/{workspace}/experiments/{experiment}/jobs/{name}/{uuid.uuid4()}",
        "created_at": now,
        "provisioning_state": "succeeded",
        "provisioning_state_time": now,
        "execution_state": JobState.QUEUED,
        "execution_state_time": now,
        "errors": [],
        "start_time": None,
        "end_time": None,
        "exit_code": None,
        "stop_reason": None,
        "skips": 0,
        "attempts": 0,
        "notes": {},
        "version": 1,
    }
    (job_id,) = connection.execute(_INSERT, values).inserted_primary_key or (0,)
    if ctx.runtime is not None:
        ctx.after_commit.append(functools.partial(ctx.runtime.job_queued, cluster.id, values["priority"]))
    return JobView(job_id, **{k: values[k] for k in JobView._fields[1:]}), parent.arm_id


def transition(
    current: JobState,
    new: JobState,
    now: datetime,
    *,
    start_time: datetime | None,
    errors: list[Any],
    error: dict[str, Any] | None = None,
    exit_code: int | None = None,
) -> dict[str, Any]:
    """The columns a change of ``execution_state`` writes: checks the transition and stamps the times."""
    check_transition(current, new)
    values: dict[str, Any] = {"execution_state": new, "execution_state_time": now}
    if new is JobState.RUNNING and start_time is None:
        values["start_time"] = now
    if new.is_terminal:
        values["end_time"] = now
        values["exit_code"] = exit_code
    if error:
        values["errors"] = [*errors, error]
    return values


def switch_state(
    ctx: Ctx, job: Job, new: JobState, *, error: dict[str, Any] | None = None, exit_code: int | None = None
) -> None:
    """The only writer of ``execution_state`` on a loaded job (see ``switch_state_row`` for the engine's)."""
    values = transition(
        JobState(job.execution_state),
        new,
        ctx.clock(),
        start_time=job.start_time,
        errors=job.errors,
        error=error,
        exit_code=exit_code,
    )
    for column, value in values.items():
        setattr(job, column, value)


_SWITCH_STATEMENTS: dict[tuple[str, ...], Prepared] = {}


def switch_state_row(
    connection: Connection,
    job_id: int,
    row: Any,
    new: JobState,
    now: datetime,
    *,
    error: dict[str, Any] | None = None,
    exit_code: int | None = None,
    **also: Any,
) -> bool:
    """``switch_state`` in one UPDATE, for the engine's hot path: ``row`` has the job's
    ``execution_state``, ``start_time`` and ``errors``; ``also`` are more columns to set. The UPDATE
    applies only if the job is still in ``row``'s state; False if it was not (somebody changed it)."""
    values = transition(
        JobState(row.execution_state),
        new,
        now,
        start_time=row.start_time,
        errors=row.errors,
        error=error,
        exit_code=exit_code,
    )
    values.update(also)
    columns = tuple(sorted(values))
    statement = _SWITCH_STATEMENTS.get(columns)
    if statement is None:  # one statement per set of columns, built once
        statement = Prepared(
            update(Job)
            .where(Job.id == bindparam("_id"), Job.execution_state == bindparam("_current"))
            .values({**{c: bindparam(f"_{c}") for c in columns}, "version": Job.version + 1})
        )
        _SWITCH_STATEMENTS[columns] = statement
    params = {f"_{c}": v for c, v in values.items()}
    return statement.run(connection, {"_id": job_id, "_current": row.execution_state, **params}).rowcount == 1


def request_stop(ctx: Ctx, job: Job, reason: str) -> bool:
    """Record that an unfinished job must stop and why (``user``, ``deleted``, ``cluster_deleted``); the
    engine stops its processes and ends it. False if the job had already ended."""
    state = JobState(job.execution_state)
    if state.is_terminal:
        return False
    if job.stop_reason in (None, "user", "requeue"):
        job.stop_reason = reason
    if state is not JobState.TERMINATING:
        switch_state(ctx, job, JobState.TERMINATING)
    return True


def terminate(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str, name: str) -> Job:
    """Record the intent to stop: the job becomes ``terminating``, then ``failed`` once its processes end."""
    job = get(ctx, sub, group, workspace, experiment, name)
    request_stop(ctx, job, "user")
    return job


def stop_all(ctx: Ctx, jobs: list[Job], reason: str) -> list[int]:
    """Request every unfinished job of ``jobs`` to stop; the ids to wait for."""
    return [job.id for job in jobs if request_stop(ctx, job, reason)]


def on_cluster(ctx: Ctx, cluster: Cluster) -> list[Job]:
    return list(ctx.session.scalars(select(Job).filter(Job.cluster_id == cluster.id)))


def stop_processes(ctx: Ctx, job: Job) -> None:
    """Stop a running job's processes now (before its records change under it)."""
    if ctx.runtime is not None and job.execution_state in (JobState.STAGED, JobState.RUNNING, JobState.TERMINATING):
        ctx.runtime.stop_job_now(job.id)


def delete_row(ctx: Ctx, row: Job) -> None:
    """Delete a job; a running job is stopped first. Its output files stay where they are; its temporary
    directory on the cluster's shared storage (``$AZ_BATCHAI_SHARED_JOB_TEMP``) goes once the deletion commits."""
    stop_processes(ctx, row)
    cluster_id, job_id, runtime = row.cluster_id, row.id, ctx.runtime
    ctx.session.delete(row)
    if runtime is not None and cluster_id is not None:
        ctx.after_commit.append(lambda: runtime.release_job(cluster_id, job_id))


def prepare_delete(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str, name: str) -> list[int]:
    parent = experiments.get(ctx, sub, group, workspace, experiment)
    row = find(ctx.session, Job, name, experiment_id=parent.id)
    return stop_for_delete(ctx, row) if row else []


def stop_for_delete(ctx: Ctx, row: Job) -> list[int]:
    """First step of deleting a job: mark it deleting and ask it to stop if it runs."""
    mark_deleting(ctx, row)
    return stop_all(ctx, [row], "deleted")


def delete(ctx: Ctx, sub: str, group: str, workspace: str, experiment: str, name: str) -> bool:
    parent = experiments.get(ctx, sub, group, workspace, experiment)
    row = find_to_delete(ctx.session, Job, name, experiment_id=parent.id)
    if row is None:
        return False
    delete_row(ctx, row)
    return True


def _nodes_of(ctx: Ctx, job: Job) -> dict[str, Node | None]:
    """The nodes the job runs or ran on, by name, in the order of its tasks (None: a node that has left), then
    the other nodes it holds while it runs (where its master's mpirun may start processes)."""
    nodes: dict[str, Node | None] = {}
    if job.execution_state == JobState.STAGED:  # (queued, as far as anyone can tell: it has no node yet)
        return nodes
    for task in sorted(job.tasks, key=lambda t: t.index):
        node = ctx.session.get(Node, task.node_id) if task.node_id is not None else None
        name = node.name if node is not None else task.info.get("node")
        if name and name not in nodes:
            nodes[name] = node
    if job.tasks:
        for node in ctx.session.scalars(select(Node).filter(Node.job_id == job.id).order_by(Node.index)):
            nodes.setdefault(node.name, node)
    return nodes


def remote_logins(ctx: Ctx, job: Job) -> list[dict[str, Any]]:
    """The logins of the nodes the job runs or ran on, in the order of its tasks (none before it starts)."""
    return [clusters.remote_login(name, node.info if node else {}) for name, node in _nodes_of(ctx, job).items()]


def command_target(ctx: Ctx, job: Job, node_id: str | None) -> NodeTarget:
    """A node the job runs or ran on (``node_id``, or its first), where a command runs in its working
    directory (``execOnNode``)."""
    nodes = [node for node in _nodes_of(ctx, job).values() if node is not None]
    if not nodes:
        raise Conflict(
            f"The job '{job.name}' has no node to run a command on: it has not started, or its nodes have "
            "left the cluster.",
            code="NoNodes",
        )
    return clusters.node_target(job.name, nodes, node_id, job.id)
