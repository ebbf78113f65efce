"""Clusters: pools of nodes. Only ``scaleSettings`` changes after creation (PATCH), as in Batch AI.

Deleting a cluster fails every job on it that has not finished (the error says the cluster went away).
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from sqlalchemy import select

from batchai.errors import Conflict, InvalidInput, NotFound
from batchai.ids import check_name, parse_child_id
from batchai.models.resources import ClusterInput, ClusterPatch
from batchai.models.wire import ClusterProperties, ScaleSettings
from batchai.services import mounts, workspaces
from batchai.services.context import (
    Ctx,
    NodeTarget,
    find,
    find_to_delete,
    mark_deleting,
    refuse_if_deleting,
    require,
)
from batchai.services.node_rules import MAX_CLUSTER_NODES, check_count, check_node_path, check_variables
from batchai.store.prepared import Prepared
from batchai.store.tables import Cluster, Node

READ_ONLY = {
    "creationTime",
    "provisioningState",
    "provisioningStateTransitionTime",
    "allocationState",
    "allocationStateTransitionTime",
    "errors",
    "currentNodeCount",
    "nodeStateCounts",
}


def get(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> Cluster:
    row = workspaces.child(ctx, Cluster, sub, group, workspace, name)
    if row is not None:
        return row
    parent = workspaces.get(ctx, sub, group, workspace)  # says which part of the path is missing
    return require(ctx.session, Cluster, name, "cluster", workspace_id=parent.id)


class ClusterRef(NamedTuple):
    """What a job needs of the cluster it names."""

    id: int
    name: str
    spec: dict[str, Any]


_REF_BY_PATH = Prepared(
    workspaces.under_workspace(select(Cluster.id, Cluster.name, Cluster.spec, Cluster.provisioning_state), Cluster)
)


def by_id(ctx: Ctx, resource_id: str, target: str) -> ClusterRef:
    """The cluster an ARM id names; an unknown one is the client's error (400, ClusterNotFound)."""
    ref = parse_child_id(resource_id, "clusters", target)
    names = workspaces.path_names(ref.subscription, ref.group, ref.workspace, ref.name)
    row = _REF_BY_PATH.run(ctx.session.connection(), names).first()
    if row is None:
        raise InvalidInput(f"The cluster '{resource_id}' was not found.", code="ClusterNotFound", target=target)
    refuse_if_deleting(row, "cluster")
    return ClusterRef(row.id, row.name, row.spec)


def scale_spec(settings: ScaleSettings | None, target: str) -> dict[str, Any]:
    """Check scale settings (exactly one of manual and autoScale) and fill their defaults."""
    if settings is None or (settings.manual is None) == (settings.auto_scale is None):
        raise InvalidInput(
            "Give exactly one of scaleSettings.manual (targetNodeCount) and scaleSettings.autoScale "
            "(minimumNodeCount, maximumNodeCount).",
            code="InvalidScaleSettings",
            target=target,
        )
    if settings.manual is not None:
        if settings.manual.target_node_count < 0:
            raise InvalidInput("targetNodeCount must be 0 or more.", target=f"{target}.manual.targetNodeCount")
        check_count(settings.manual.target_node_count, MAX_CLUSTER_NODES, "targetNodeCount", f"{target}.manual")
        return {
            "manual": {
                "targetNodeCount": settings.manual.target_node_count,
                "nodeDeallocationOption": settings.manual.node_deallocation_option or "requeue",
            }
        }
    auto = settings.auto_scale
    assert auto is not None
    initial = auto.initial_node_count if auto.initial_node_count is not None else 0
    if not 0 <= auto.minimum_node_count <= auto.maximum_node_count or auto.maximum_node_count < 1:
        raise InvalidInput(
            "autoScale needs 0 <= minimumNodeCount <= maximumNodeCount and maximumNodeCount >= 1.",
            code="InvalidScaleSettings",
            target=f"{target}.autoScale",
        )
    check_count(auto.maximum_node_count, MAX_CLUSTER_NODES, "maximumNodeCount", f"{target}.autoScale")
    if not 0 <= initial <= auto.maximum_node_count:
        raise InvalidInput(
            "initialNodeCount must be between 0 and maximumNodeCount.",
            target=f"{target}.autoScale.initialNodeCount",
        )
    return {
        "autoScale": {
            "minimumNodeCount": auto.minimum_node_count,
            "maximumNodeCount": auto.maximum_node_count,
            "initialNodeCount": initial,
        }
    }


def setup_output_suffix(row: Cluster) -> str:
    """Where a cluster's setup task output goes under its ``stdOutErrPathPrefix`` (unique per cluster)."""
    group = row.workspace.group
    # A GUID, as Batch AI's, derived from the row (its id and creation time): stable, and another for a cluster
    # made again under the same name.
    unique = uuid.uuid5(uuid.NAMESPACE_OID, f"batchai-cluster-{row.id}-{row.created_at.timestamp()!r}")
    return f"{group.subscription}/{group.name}/workspaces/{row.workspace.name}/clusters/{row.name}/{unique}"


def remote_login(name: str, info: dict[str, Any]) -> dict[str, Any]:
    """A node's RemoteLoginInformation: local nodes are this host; a Ray node is its machine's address."""
    return {"nodeId": name, "ipAddress": str(info.get("address") or "127.0.0.1"), "port": 22}


def forwarded_address(target: NodeTarget, host: str, port: int) -> tuple[str, int]:
    """Where the server connects for ``host:port`` as the node sees it (``node exec --address``): a port of
    the node itself, named by a loopback name or by the node's address; a local node is this host."""
    address = str(target.node_info.get("address") or "127.0.0.1")
    if not 0 < port < 65536:
        raise InvalidInput(f"The port {port} is not a TCP port (1 to 65535).", target="port")
    if host.strip("[]").lower() not in ("localhost", "127.0.0.1", "::1", address.lower()):
        raise InvalidInput(
            f"Forwarding reaches the ports of the node itself ({target.node_name}: localhost or {address}), "
            f"not of '{host}'.",
            target="host",
        )
    return address, port


def remote_logins(row: Cluster) -> list[dict[str, Any]]:
    return [remote_login(node.name, node.info) for node in sorted(row.nodes, key=lambda n: n.index)]


def command_target(row: Cluster, node_id: str | None) -> NodeTarget:
    """The node of the cluster a command runs on (``execOnNode``): ``node_id``, or the first node."""
    nodes = sorted(row.nodes, key=lambda n: n.index)
    if not nodes:
        raise Conflict(f"The cluster '{row.name}' has no nodes to run a command on.", code="NoNodes")
    return node_target(row.name, nodes, node_id)


def node_target(owner: str, nodes: list[Node], node_id: str | None, job_id: int | None = None) -> NodeTarget:
    """``node_id`` (any case) of ``nodes``, or the first of them; ``owner`` names whose nodes these are."""
    node = nodes[0] if node_id is None else next((n for n in nodes if n.name.lower() == node_id.lower()), None)
    if node is None:
        raise NotFound(
            f"'{owner}' has no node '{node_id}'; its nodes: {', '.join(n.name for n in nodes)}.",
            code="NodeNotFound",
            target="nodeId",
        )
    return NodeTarget(node.cluster_id, node.name, dict(node.info), job_id)


def node_counts(row: Cluster) -> dict[str, int]:
    """How many of the cluster's nodes are in each state (idle, running, preparing, unusable, leaving)."""
    counts: dict[str, int] = {}
    for node in row.nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    return counts


def capacity(spec: dict[str, Any]) -> int:
    """The most nodes the cluster holds as configured: the manual target or the auto-scale maximum."""
    scale = spec["scaleSettings"]
    return int(scale["manual"]["targetNodeCount"] if "manual" in scale else scale["autoScale"]["maximumNodeCount"])


def stageable(row: Any) -> bool:
    """Whether jobs may be staged on the cluster's busy nodes (``row``: a Cluster, or a row with its ``spec``
    and ``allocation_state``): its size is fixed and reached, so no resize or auto-scale is about to take a
    node from under a staged job."""
    return "manual" in row.spec["scaleSettings"] and row.allocation_state == "steady"


# The image of a cluster created without one, as Batch AI showed it (its recipes' cluster create outputs).
DEFAULT_IMAGE = {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS", "version": "latest"}


def build_spec(ctx: Ctx, props: ClusterProperties) -> dict[str, Any]:
    spec = {k: v for k, v in props.wire().items() if k not in READ_ONLY}
    if not (spec.get("virtualMachineConfiguration") or {}).get("imageReference"):
        spec["virtualMachineConfiguration"] = {"imageReference": dict(DEFAULT_IMAGE)}
    vm_size = (props.vm_size or "").strip()
    if not vm_size:
        raise InvalidInput("vmSize is required (for example STANDARD_NC6).", target="properties.vmSize")
    spec["vmSize"] = vm_size.upper()  # as Azure showed it (STANDARD_NC6 for Standard_NC6)
    spec["vmPriority"] = props.vm_priority or "dedicated"
    spec["scaleSettings"] = scale_spec(props.scale_settings, "properties.scaleSettings")
    node_setup = spec.get("nodeSetup") or {}
    if node_setup.get("setupTask") is not None:
        _check_setup_task(node_setup["setupTask"], "properties.nodeSetup.setupTask")
    if node_setup.get("mountVolumes"):
        node_setup["mountVolumes"] = mounts.normalise(
            ctx, node_setup["mountVolumes"], "properties.nodeSetup.mountVolumes"
        )
    return spec


def _check_setup_task(task: dict[str, Any], target: str) -> None:
    if not (task.get("commandLine") or "").strip():
        raise InvalidInput("The setup task's commandLine is required.", target=f"{target}.commandLine")
    check_node_path(task.get("stdOutErrPathPrefix"), f"{target}.stdOutErrPathPrefix")
    taken: set[str] = set()
    for where in ("environmentVariables", "secrets"):
        check_variables(task.get(where) or [], f"{target}.{where}", taken)


def put(ctx: Ctx, sub: str, group: str, workspace: str, name: str, body: ClusterInput) -> tuple[Cluster, bool]:
    """Create the cluster. PUT again with the same properties returns it; other properties are a conflict."""
    check_name("cluster", name)
    parent = workspaces.get(ctx, sub, group, workspace)
    workspaces.refuse_if_being_deleted(parent)
    spec = build_spec(ctx, body.properties)
    row = find(ctx.session, Cluster, name, workspace_id=parent.id)
    if row is not None:
        refuse_if_deleting(row, "cluster")
        if row.spec != spec:
            scale_only = {**row.spec, "scaleSettings": None} == {**spec, "scaleSettings": None}
            raise Conflict(
                f"The cluster '{name}' exists with other scale settings; they change with PATCH (the SDK's "
                "clusters.update, 'batchai cluster resize' or 'auto-scale'), not with a new PUT."
                if scale_only
                else f"The cluster '{name}' exists with other properties; only its scale settings can change "
                "(PATCH, or 'batchai cluster resize').",
                code="PropertyChangeNotAllowed",
                target=name,
            )
        return row, False
    now = ctx.clock()
    row = Cluster(
        workspace_id=parent.id,
        name=name,
        key=name.lower(),
        spec=spec,
        created_at=now,
        provisioning_state="succeeded",
        provisioning_state_time=now,
        # As Azure: "resizing" until the engine has the nodes (a new cluster has none yet).
        allocation_state="resizing" if initial_nodes(spec) > 0 else "steady",
        allocation_state_time=now,
        errors=[],
    )
    ctx.session.add(row)
    ctx.session.flush()
    return row, True


def initial_nodes(spec: dict[str, Any]) -> int:
    """How many nodes a new cluster starts with (the engine grows auto-scale clusters further as jobs wait)."""
    scale = spec["scaleSettings"]
    if "manual" in scale:
        return int(scale["manual"]["targetNodeCount"])
    return int(scale["autoScale"]["minimumNodeCount"])


def patch(ctx: Ctx, sub: str, group: str, workspace: str, name: str, body: ClusterPatch) -> Cluster:
    row = get(ctx, sub, group, workspace, name)
    refuse_if_deleting(row, "cluster")
    if body.properties.scale_settings is not None:
        scale = scale_spec(body.properties.scale_settings, "properties.scaleSettings")
        if scale != row.spec["scaleSettings"] and row.allocation_state != "resizing":
            # The engine makes it steady again once the nodes match the new settings.
            row.allocation_state = "resizing"
            row.allocation_state_time = ctx.clock()
        row.spec = {**row.spec, "scaleSettings": scale}
    return row


def list_in_workspace(ctx: Ctx, sub: str, group: str, workspace: str) -> list[Cluster]:
    parent = workspaces.get(ctx, sub, group, workspace)
    return list(ctx.session.scalars(select(Cluster).filter_by(workspace_id=parent.id).order_by(Cluster.key)))


def stop_for_delete(ctx: Ctx, row: Cluster) -> list[int]:
    """First step of deleting a cluster: mark it deleting and ask its unfinished jobs to stop."""
    from batchai.services import jobs

    mark_deleting(ctx, row)
    return jobs.stop_all(ctx, jobs.on_cluster(ctx, row), "cluster_deleted")


def prepare_delete(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> list[int]:
    parent = workspaces.get(ctx, sub, group, workspace)
    row = find(ctx.session, Cluster, name, workspace_id=parent.id)
    return stop_for_delete(ctx, row) if row else []


def delete_row(ctx: Ctx, row: Cluster) -> None:
    from batchai.services import jobs

    for job in jobs.on_cluster(ctx, row):
        jobs.request_stop(ctx, job, "cluster_deleted")  # the engine ends what is left (ClusterDeleted)
        jobs.stop_processes(ctx, job)  # only if the engine did not end it in time
    cluster_id, nodes, runtime = row.id, [(n.name, dict(n.info)) for n in row.nodes], ctx.runtime
    ctx.session.delete(row)
    if runtime is not None:
        ctx.after_commit.append(lambda: runtime.release_cluster(cluster_id, nodes))


def delete(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> bool:
    parent = workspaces.get(ctx, sub, group, workspace)
    row = find_to_delete(ctx.session, Cluster, name, workspace_id=parent.id)
    if row is None:
        return False
    delete_row(ctx, row)
    return True
