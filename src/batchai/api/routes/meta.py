"""Operations and usages: what the provider offers and how much of this host is in use."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from batchai.api.deps import any_api_version, page, run
from batchai.providers.base import ProviderUnavailable
from batchai.services.context import Ctx
from batchai.store.tables import Cluster, ResourceGroup, Workspace

router = APIRouter(dependencies=[Depends(any_api_version)], tags=["provider"])

OPERATIONS = [
    ("workspaces", "read", "List or get workspaces"),
    ("workspaces", "write", "Create or update a workspace"),
    ("workspaces", "delete", "Delete a workspace"),
    ("workspaces/experiments", "read", "List or get experiments"),
    ("workspaces/experiments", "write", "Create an experiment"),
    ("workspaces/experiments", "delete", "Delete an experiment"),
    ("workspaces/experiments/jobs", "read", "List or get jobs"),
    ("workspaces/experiments/jobs", "write", "Create a job"),
    ("workspaces/experiments/jobs", "delete", "Delete a job"),
    ("workspaces/experiments/jobs/terminate", "action", "Terminate a job"),
    ("workspaces/experiments/jobs/listOutputFiles", "action", "List the output files of a job"),
    ("workspaces/experiments/jobs/listRemoteLoginInformation", "action", "List the nodes of a job"),
    ("workspaces/clusters", "read", "List or get clusters"),
    ("workspaces/clusters", "write", "Create or update a cluster"),
    ("workspaces/clusters", "delete", "Delete a cluster"),
    ("workspaces/clusters/listRemoteLoginInformation", "action", "List the nodes of a cluster"),
    ("workspaces/fileServers", "read", "List or get file servers"),
    ("workspaces/fileServers", "write", "Create a file server"),
    ("workspaces/fileServers", "delete", "Delete a file server"),
    ("locations/usages", "read", "Get usages and quotas"),
]


@router.get("/providers/Microsoft.BatchAI/operations")
def list_operations(request: Request) -> Any:
    value = [
        {
            "name": f"Microsoft.BatchAI/{resource}/{verb}",
            "display": {
                "provider": "Microsoft Batch AI",
                "resource": resource,
                "operation": text,
                "description": text,
            },
            "origin": "user,system",
        }
        for resource, verb, text in OPERATIONS
    ]
    return page(request, value)


@router.get("/subscriptions/{sub}/providers/Microsoft.BatchAI/locations/{location}/usages")
def list_usages(sub: str, location: str, request: Request) -> Any:
    """Nodes of the subscription's clusters (one core each) against the cores of this host, or, on Ray, against
    the machines that can be nodes."""

    def in_use(ctx: Ctx) -> int:
        query = select(Cluster).join(Workspace).join(ResourceGroup).filter(ResourceGroup.subscription == sub)
        return sum(len(c.nodes) for c in ctx.session.scalars(query))

    used = run(request, in_use)
    limit = os.cpu_count() or 1
    engine = request.app.state.engine
    if engine is not None:
        with contextlib.suppress(ProviderUnavailable):  # (Ray down: this host's count, as a guess)
            machines = engine.provider.inventory()
            limit = limit if machines is None else len(machines)
    value = [
        {
            "unit": "Count",
            "currentValue": used,
            "limit": limit,
            "name": {"value": "cores", "localizedValue": "Total Cluster Dedicated Regional vCPUs"},
        }
    ]
    return page(request, value)
