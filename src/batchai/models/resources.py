"""ARM envelopes around the generated wire properties: what each PUT/PATCH takes and each GET returns."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from batchai.models.base import WireModel
from batchai.models.wire import (
    ClusterProperties,
    ExperimentProperties,
    FileServerProperties,
    JobProperties,
    ScaleSettings,
    WorkspaceProperties,
)

# An Azure location, by name ("eastus") or display name ("East US").
Location = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,89}$")]


class ArmInput(WireModel):
    """Fields a client may echo back from a GET; ARM ignores them on input."""

    id: str | None = None
    name: str | None = None
    type: str | None = None


class ResourceGroupInput(ArmInput):
    location: Location
    tags: dict[str, str] | None = None
    managed_by: str | None = Field(None, alias="managedBy")
    properties: dict[str, Any] | None = None


class ResourceGroupPatch(WireModel):
    tags: dict[str, str] | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None
    managed_by: str | None = Field(None, alias="managedBy")


class WorkspaceInput(ArmInput):
    location: Location
    tags: dict[str, str] | None = None
    properties: WorkspaceProperties | None = None


class WorkspacePatch(WireModel):
    tags: dict[str, str] | None = None


class ClusterInput(ArmInput):
    properties: ClusterProperties
    location: Location | None = None


class ClusterPatchProperties(WireModel):
    scale_settings: ScaleSettings | None = Field(None, alias="scaleSettings")


class ClusterPatch(WireModel):
    properties: ClusterPatchProperties


class FileServerInput(ArmInput):
    properties: FileServerProperties
    location: Location | None = None


class JobInput(ArmInput):
    properties: JobProperties
    location: Location | None = None


class ExperimentInput(ArmInput):
    properties: ExperimentProperties | None = None


class StorageSku(WireModel):
    name: str = "Standard_LRS"
    tier: str | None = None


class StorageAccountInput(ArmInput):
    location: Location | None = None
    sku: StorageSku | None = None
    kind: str | None = None
    tags: dict[str, str] | None = None
    properties: dict[str, Any] | None = None


class Page(WireModel):
    """A page of a list: ``{"value": [...], "nextLink": ...}``."""

    value: list[dict[str, Any]]
    next_link: str | None = Field(None, alias="nextLink")


class NodeCommandInput(WireModel):
    """A command to run on a node and wait for (``execOnNode``, a batchai extension: what ``az batchai ...
    node exec --exec`` ran over SSH). ``nodeId``: which node (default: the first)."""

    node_id: str | None = Field(None, alias="nodeId")
    command: str = Field(min_length=1)
    timeout_in_seconds: int = Field(300, ge=1, le=3600, alias="timeoutInSeconds")
