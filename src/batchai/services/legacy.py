"""The api versions before workspaces (2017-09-01-preview, 2018-03-01) on the same data.

Clusters, file servers and jobs of those versions live directly in a resource group. batchai keeps them in
an implicit workspace named ``default`` in that group (created on first use), and a job's ``experimentName``
(default ``default``) names its experiment there; so the same resources are visible through both versions.
A numeric ``priority`` maps to ``schedulingPriority`` (> 0 high, < 0 low) and is kept for rendering.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from batchai.errors import NotFound
from batchai.ids import PROVIDER, workspace_id
from batchai.models.legacy import LegacyClusterInput, LegacyFileServerInput, LegacyJobInput
from batchai.models.resources import ClusterInput, FileServerInput, JobInput, WorkspaceInput
from batchai.services import experiments, groups, workspaces
from batchai.services.context import Ctx, find
from batchai.store.tables import Experiment, Job, ResourceGroup, Workspace

WORKSPACE = "default"
EXPERIMENT = "default"
_LEGACY_CHILD = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.BatchAI/"
    r"(?P<collection>clusters|fileServers)/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)


def workspace(ctx: Ctx, sub: str, group: str, create: bool = False) -> Workspace | None:
    """The group's implicit workspace; created (with the group's location) when ``create``."""
    parent = groups.get(ctx, sub, group)
    row = find(ctx.session, Workspace, WORKSPACE, group_id=parent.id)
    if row is None and create:
        row, _ = workspaces.put(ctx, sub, group, WORKSPACE, WorkspaceInput(location=parent.location))
    return row


def require_workspace(ctx: Ctx, sub: str, group: str, kind: str, name: str) -> Workspace:
    row = workspace(ctx, sub, group)
    if row is None:
        raise NotFound(
            f"The {kind} '{name}' was not found.", code=f"{kind.title().replace(' ', '')}NotFound", target=name
        )
    return row


def modern_id(resource_id: str) -> str:
    """A pre-workspace cluster or file server id -> the id of the same resource in the implicit workspace."""
    match = _LEGACY_CHILD.match(resource_id.strip())
    if not match:
        return resource_id
    return f"{workspace_id(match['sub'], match['group'], WORKSPACE)}/{match['collection']}/{match['name']}"


def legacy_id(resource_id: str) -> str:
    """The other way round, for resources in an implicit workspace; other ids are left as they are."""
    marker = f"/{PROVIDER}/workspaces/{WORKSPACE}/"
    index = resource_id.lower().find(marker.lower())
    if index < 0:
        return resource_id
    rest = resource_id[index + len(marker) :]
    if rest.lower().startswith("experiments/"):
        rest = rest.split("/", 2)[2]  # experiments/{name}/jobs/{job} -> jobs/{job}
    return f"{resource_id[:index]}/{PROVIDER}/{rest}"


def cluster_input(body: LegacyClusterInput) -> ClusterInput:
    """The modern cluster: the same properties less a setup task's ``runElevated`` (a node runs it as root)."""
    props = body.properties.passed_on(exclude={"node_setup": {"setup_task": {"run_elevated"}}})
    return ClusterInput.model_validate({"properties": props})


def file_server_input(body: LegacyFileServerInput) -> FileServerInput:
    return FileServerInput.model_validate({"properties": body.properties})


def job_input(body: LegacyJobInput) -> tuple[JobInput, str, dict[str, Any]]:
    """The modern job, its experiment name, and what only the old versions show (kept in the job's notes)."""
    legacy = body.properties
    props = legacy.passed_on(
        exclude={
            "experiment_name": True,
            "priority": True,
            "output_directories": {"__all__": {"type", "create_new"}},
        }
    )
    experiment = legacy.experiment_name or EXPERIMENT
    priority = legacy.priority or 0
    if legacy.priority is not None:
        props["schedulingPriority"] = "high" if priority > 0 else "low" if priority < 0 else "normal"
    if not props.get("outputDirectories"):
        props.pop("outputDirectories", None)
    if legacy.cluster is not None and legacy.cluster.id:
        props["cluster"] = {"id": modern_id(legacy.cluster.id)}
    extras = {"priority": priority, "location": body.location, "tags": body.tags or {}}
    return JobInput.model_validate({"properties": props}), experiment, extras


def find_job(ctx: Ctx, sub: str, group: str, name: str) -> Job | None:
    ws = workspace(ctx, sub, group)
    if ws is None:
        return None
    query = (
        select(Job)
        .join(Experiment)
        .filter(Experiment.workspace_id == ws.id, Job.key == name.lower())
        .order_by(Job.created_at)
    )
    return ctx.session.scalars(query).first()


def require_job(ctx: Ctx, sub: str, group: str, name: str) -> Job:
    row = find_job(ctx, sub, group, name)
    if row is None:
        raise NotFound(f"The job '{name}' was not found.", code="JobNotFound", target=name)
    return row


def jobs_in(ctx: Ctx, sub: str, group: str | None) -> list[Job]:
    query = (
        select(Job)
        .join(Experiment)
        .join(Workspace)
        .join(ResourceGroup)
        .filter(ResourceGroup.subscription == sub, Workspace.key == WORKSPACE)
    )
    if group is not None:
        groups.get(ctx, sub, group)
        query = query.filter(ResourceGroup.key == group.lower())
    return list(ctx.session.scalars(query.order_by(Job.created_at, Job.id)))


def experiment_for(ctx: Ctx, sub: str, group: str, name: str) -> Experiment:
    workspace(ctx, sub, group, create=True)
    row = find(ctx.session, Experiment, name, workspace_id=require_workspace(ctx, sub, group, "job", name).id)
    return row or experiments.put(ctx, sub, group, WORKSPACE, name)[0]


def as_legacy(
    resource: dict[str, Any], kind: str, location: str, extras: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A modern rendering -> the old shape: legacy id and type, ``location`` and ``tags`` on the resource."""
    out = dict(resource)
    out["id"] = legacy_id(resource["id"])
    out["type"] = f"Microsoft.BatchAI/{kind}"
    out["location"] = (extras or {}).get("location") or location
    out["tags"] = (extras or {}).get("tags") or {}
    props = dict(out.get("properties") or {})
    if isinstance(props.get("cluster"), dict) and props["cluster"].get("id"):
        props["cluster"] = {**props["cluster"], "id": legacy_id(props["cluster"]["id"])}
    out["properties"] = props
    return out
