"""Request bodies of the api versions before workspaces (2017-09-01-preview, 2018-03-01).

These type the envelope (``location``, ``tags``, ``properties``) and the few properties only those versions
have (``experimentName``, ``priority``, an output directory's ``type``/``createNew``, a setup task's
``runElevated``), so a value of the wrong type is a 400 before anything is translated or stored. Every other
property is passed on untouched and checked by the 2018-05-01 model it is translated into.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from batchai.models.base import WireModel
from batchai.models.resources import ArmInput, ClusterPatchProperties, Location
from batchai.models.wire import ResourceId


class _Passing(BaseModel):
    """An object whose other keys are kept as they came, for the 2018-05-01 model to check."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def passed_on(self, exclude: Any = None) -> dict[str, Any]:
        """The object as it came (camelCase keys), less ``exclude``d fields and what the client left out."""
        return self.model_dump(by_alias=True, exclude_unset=True, exclude=exclude)


class LegacySetupTask(_Passing):
    run_elevated: bool | None = Field(None, alias="runElevated")


class LegacyNodeSetup(_Passing):
    setup_task: LegacySetupTask | None = Field(None, alias="setupTask")


class LegacyClusterProperties(_Passing):
    node_setup: LegacyNodeSetup | None = Field(None, alias="nodeSetup")


class LegacyOutputDirectory(_Passing):
    type: str | None = None
    create_new: bool | None = Field(None, alias="createNew")


class LegacyJobProperties(_Passing):
    experiment_name: str | None = Field(None, alias="experimentName")
    priority: StrictInt | None = Field(None, ge=-1000, le=1000)
    cluster: ResourceId | None = None
    output_directories: list[LegacyOutputDirectory] | None = Field(None, alias="outputDirectories")


class _LegacyInput(ArmInput):
    location: Location | None = None
    tags: dict[str, str] | None = None


class LegacyClusterInput(_LegacyInput):
    properties: LegacyClusterProperties


class LegacyFileServerInput(_LegacyInput):
    properties: dict[str, Any]


class LegacyJobInput(_LegacyInput):
    properties: LegacyJobProperties


class LegacyClusterPatch(WireModel):
    tags: dict[str, str] | None = None
    properties: ClusterPatchProperties | None = None
