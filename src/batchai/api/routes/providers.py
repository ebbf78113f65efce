"""ARM's resource providers (``/subscriptions/{sub}/providers``): the namespaces this server serves.

They are always registered: the walkthroughs' first step, ``az provider register -n Microsoft.BatchAI``
(here ``batchai provider register``), and ``ResourceManagementClient.providers.register`` succeed at once
and change nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from batchai import API_VERSION
from batchai.api.deps import any_api_version, page, respond
from batchai.api.routes import SUB
from batchai.api.routes.legacy import LEGACY_VERSIONS
from batchai.errors import NotFound

router = APIRouter(dependencies=[Depends(any_api_version)], tags=["resource providers"])

_BATCHAI = (API_VERSION,)
_LEGACY = tuple(sorted(LEGACY_VERSIONS))
# Resource types by namespace, each with the api versions it is served in.
NAMESPACES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "Microsoft.BatchAI": [
        ("workspaces", _BATCHAI),
        ("workspaces/clusters", _BATCHAI),
        ("workspaces/fileServers", _BATCHAI),
        ("workspaces/experiments", _BATCHAI),
        ("workspaces/experiments/jobs", _BATCHAI),
        ("clusters", _LEGACY),
        ("fileServers", _LEGACY),
        ("jobs", _LEGACY),
        ("operations", (*_LEGACY, *_BATCHAI)),
        ("locations/usages", (*_LEGACY, *_BATCHAI)),
    ],
    "Microsoft.Storage": [("storageAccounts", ("2023-01-01",))],
    # The earlier api's walkthroughs register Azure Batch, on which Batch AI ran then; nothing here needs it.
    "Microsoft.Batch": [],
}


def provider(sub: str, namespace: str) -> dict[str, Any]:
    """A namespace as ARM's ``Provider``; ``namespace`` in any case."""
    name = next((n for n in NAMESPACES if n.lower() == namespace.lower()), None)
    if name is None:
        raise NotFound(
            f"The resource namespace '{namespace}' is invalid: this server serves {', '.join(NAMESPACES)}.",
            code="InvalidResourceNamespace",
            target="namespace",
        )
    return {
        "id": f"/subscriptions/{sub}/providers/{name}",
        "namespace": name,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [
            {"resourceType": kind, "locations": [], "apiVersions": list(versions)}
            for kind, versions in NAMESPACES[name]
        ],
    }


@router.get(SUB + "/providers")
def list_providers(sub: str, request: Request) -> Any:
    return page(request, [provider(sub, name) for name in NAMESPACES])


@router.get(SUB + "/providers/{namespace}")
def get_provider(sub: str, namespace: str) -> Any:
    return respond(provider(sub, namespace))


@router.post(SUB + "/providers/{namespace}/register")
def register_provider(sub: str, namespace: str) -> Any:
    """Registering is a no-op: every namespace served is registered."""
    return respond(provider(sub, namespace))
