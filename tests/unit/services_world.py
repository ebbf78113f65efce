"""A small world made through the real services, for tests below the API: a resource group ``g`` with a
workspace ``ws``, an experiment ``exp`` and clusters, and jobs on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchai.models.resources import ClusterInput, JobInput, ResourceGroupInput, WorkspaceInput
from batchai.services import clusters, experiments, groups, jobs, workspaces
from batchai.services.context import Ctx

SUB = "00000000-0000-0000-0000-000000000000"
WS = f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.BatchAI/workspaces/ws"


def workspace(ctx: Ctx, cluster_names: tuple[str, ...] = ("c",)) -> None:
    """Group ``g``, workspace ``ws``, experiment ``exp`` and a one-node cluster per name."""
    groups.put(ctx, SUB, "g", ResourceGroupInput.model_validate({"location": "local"}))
    workspaces.put(ctx, SUB, "g", "ws", WorkspaceInput.model_validate({"location": "local"}))
    experiments.put(ctx, SUB, "g", "ws", "exp")
    for name in cluster_names:
        body = {"properties": {"vmSize": "local", "scaleSettings": {"manual": {"targetNodeCount": 1}}}}
        clusters.put(ctx, SUB, "g", "ws", name, ClusterInput.model_validate(body))


def submit(ctx: Ctx, name: str, logs: Path, cluster: str = "c", command: str = "true", **properties: Any) -> None:
    """A one-node job in ``exp`` running ``command``, its output under ``logs``."""
    body = {
        "properties": {
            "cluster": {"id": f"{WS}/clusters/{cluster}"},
            "nodeCount": 1,
            "stdOutErrPathPrefix": str(logs),
            "customToolkitSettings": {"commandLine": command},
            **properties,
        }
    }
    jobs.create(ctx, SUB, "g", "ws", "exp", name, JobInput.model_validate(body))
