"""Stored rows -> wire JSON of api-version 2018-05-01. Secrets are removed here, on every way out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from batchai.ids import PROVIDER, group_id, workspace_id
from batchai.models import wire
from batchai.services import experiments
from batchai.services.context import DELETING
from batchai.services.jobs import JobView
from batchai.states import JobState
from batchai.store.tables import (
    Cluster,
    Experiment,
    FileServer,
    Job,
    ResourceGroup,
    StorageAccount,
    Workspace,
)

SECRET_KEYS = frozenset({"accountKey", "adminUserPassword", "password", "instrumentationKey"})


def without_secrets(value: Any) -> Any:
    """A copy with every secret value dropped: keys, passwords, and the ``value`` of ``secrets`` items."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in SECRET_KEYS:
                continue
            if key == "secrets" and isinstance(item, list):
                out[key] = [{k: v for k, v in s.items() if k != "value"} for s in item]
            else:
                out[key] = without_secrets(item)
        return out
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wire_json(value: Any) -> Any:
    """Stored wire JSON plus server fields as JSON: datetimes as ISO 8601 UTC, nulls left out.

    The stored specs were validated against the wire models on the way in, and the contract tests hold
    every rendered resource against the SDK's models, so this need not validate again (it is on every GET).
    """
    if isinstance(value, dict):
        return {k: wire_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [wire_json(v) for v in value]
    if isinstance(value, datetime):
        return _timestamp(value)
    return value


def group(row: ResourceGroup) -> dict[str, Any]:
    return {
        "id": group_id(row.subscription, row.name),
        "name": row.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": row.location,
        "tags": row.tags,
        "properties": {"provisioningState": "Deleting" if row.provisioning_state == DELETING else "Succeeded"},
    }


def _workspace_id(row: Workspace) -> str:
    return workspace_id(row.group.subscription, row.group.name, row.name)


def workspace(row: Workspace) -> dict[str, Any]:
    props = wire.WorkspaceProperties(
        creation_time=row.created_at,
        provisioning_state=row.provisioning_state,
        provisioning_state_transition_time=row.provisioning_state_time,
    )
    return {
        "id": _workspace_id(row),
        "name": row.name,
        "type": "Microsoft.BatchAI/workspaces",
        "location": row.location,
        "tags": row.tags,
        "properties": props.wire(),
    }


def experiment(row: Experiment) -> dict[str, Any]:
    props = wire.ExperimentProperties(
        creation_time=row.created_at,
        provisioning_state=row.provisioning_state,
        provisioning_state_transition_time=row.provisioning_state_time,
    )
    return {
        "id": experiments.arm_id(row),
        "name": row.name,
        "type": "Microsoft.BatchAI/workspaces/experiments",
        "properties": props.wire(),
    }


def cluster_id(row: Cluster) -> str:
    return f"{_workspace_id(row.workspace)}/clusters/{row.name}"


def cluster(row: Cluster) -> dict[str, Any]:
    """The cluster, with node counts by state from its nodes."""
    from batchai.services.clusters import node_counts, setup_output_suffix

    counts = node_counts(row)
    spec = without_secrets(row.spec)
    setup = (spec.get("nodeSetup") or {}).get("setupTask")
    if setup is not None:
        setup["stdOutErrPathSuffix"] = setup_output_suffix(row)
    props = {
        **spec,
        "creationTime": row.created_at,
        "provisioningState": row.provisioning_state,
        "provisioningStateTransitionTime": row.provisioning_state_time,
        "allocationState": row.allocation_state,
        "allocationStateTransitionTime": row.allocation_state_time,
        "errors": row.errors or None,
        "currentNodeCount": sum(counts.values()),
        "nodeStateCounts": {
            f"{state}NodeCount": counts.get(state, 0)
            for state in ("idle", "running", "preparing", "unusable", "leaving")
        },
    }
    return {
        "id": cluster_id(row),
        "name": row.name,
        "type": "Microsoft.BatchAI/workspaces/clusters",
        "properties": wire_json(props),
    }


def file_server(row: FileServer) -> dict[str, Any]:
    props = {
        **without_secrets(row.spec),
        "creationTime": row.created_at,
        "provisioningState": row.provisioning_state,
        "provisioningStateTransitionTime": row.provisioning_state_time,
        "mountSettings": {
            "mountPoint": "/mnt/data",
            "fileServerPublicIP": "127.0.0.1",
            "fileServerInternalIP": "127.0.0.1",
        },
    }
    return {
        "id": f"{_workspace_id(row.workspace)}/fileServers/{row.name}",
        "name": row.name,
        "type": "Microsoft.BatchAI/workspaces/fileServers",
        "properties": wire_json(props),
    }


def job(row: Job | JobView, parent_id: str | None = None) -> dict[str, Any]:
    """A job's wire JSON; ``parent_id`` (its experiment's ARM id) spares loading its parents (a JobView has
    none to load)."""
    if parent_id is None:
        if not isinstance(row, Job):
            raise TypeError("a JobView is shown with its experiment's ARM id")
        parent_id = experiments.arm_id(row.experiment)
    props: dict[str, Any] = {
        **without_secrets(row.spec),
        "toolType": row.tool_type,
        "jobOutputDirectoryPathSegment": row.output_segment,
        "creationTime": row.created_at,
        "provisioningState": row.provisioning_state,
        "provisioningStateTransitionTime": row.provisioning_state_time,
        "executionState": JobState(row.execution_state).shown,
        "executionStateTransitionTime": row.execution_state_time,
    }
    if row.start_time or row.errors:
        props["executionInfo"] = {
            "startTime": row.start_time,
            "endTime": row.end_time,
            "exitCode": row.exit_code,
            "errors": row.errors or None,
        }
    return {
        "id": f"{parent_id}/jobs/{row.name}",
        "name": row.name,
        "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
        "properties": wire_json(props),
    }


def storage_account(row: StorageAccount, endpoint: str) -> dict[str, Any]:
    base = f"{endpoint}/storage/{row.name}"
    return {
        "id": f"{group_id(row.group.subscription, row.group.name)}/providers/Microsoft.Storage/"
        f"storageAccounts/{row.name}",
        "name": row.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": row.location,
        "tags": row.tags,
        "sku": {"name": row.sku, "tier": "Premium" if row.sku.startswith("Premium") else "Standard"},
        "kind": row.kind,
        "properties": {
            "provisioningState": row.provisioning_state,
            "creationTime": row.created_at.isoformat().replace("+00:00", "Z"),
            "primaryEndpoints": {"file": f"{base}/shares/", "blob": f"{base}/containers/"},
        },
    }


__all__ = ["PROVIDER", "cluster", "experiment", "file_server", "group", "job", "storage_account", "workspace"]
