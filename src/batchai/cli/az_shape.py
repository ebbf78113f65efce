"""Wire JSON as az printed the SDK's models (knack's ``todict`` of azure-mgmt-batchai's objects).

Every attribute of the model is there, null when the server did not send it; keys are the attributes' names in
camelCase, ``properties`` flattened away; datetimes are written as Python's ``isoformat()``
(``2018-06-15T06:27:49.692000+00:00``) and durations as ``str(timedelta)`` (``7 days, 0:00:00``). Keys the model
lacks are kept as the server sent them, so that nothing is lost.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from batchai.cli.sdk_models import MODELS, Attribute

# The SDK model of each Batch AI resource, by its ``type`` in lower case.
RESOURCE_MODELS = {
    "microsoft.batchai/workspaces": "Workspace",
    "microsoft.batchai/workspaces/clusters": "Cluster",
    "microsoft.batchai/workspaces/fileservers": "FileServer",
    "microsoft.batchai/workspaces/experiments": "Experiment",
    "microsoft.batchai/workspaces/experiments/jobs": "Job",
}

_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(
    rf"^P(?=\d|T\d)(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?=\d)(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
)


def resource_model(value: Any) -> str | None:
    """The SDK model of a Batch AI resource, from its ``type`` (any case); None for anything else."""
    kind = value.get("type") if isinstance(value, dict) else None
    return RESOURCE_MODELS.get(kind.lower()) if isinstance(kind, str) else None


def as_model(value: Any, model: str) -> Any:
    """``value`` (wire JSON of the SDK's ``model``, or a list of them) as az showed it."""
    if isinstance(value, list):
        return [as_model(item, model) for item in value]
    return _convert(value, model)


def _convert(value: Any, type_name: str) -> Any:
    """A wire value of the SDK type ``type_name`` (``iso-8601``, ``[Job]``, ``{str}``, ``Cluster``...)."""
    if value is None:
        return None
    if type_name.startswith("[") and isinstance(value, list):
        return [_convert(item, type_name[1:-1]) for item in value]
    if type_name.startswith("{") and isinstance(value, dict):
        return {key: _convert(item, type_name[1:-1]) for key, item in value.items()}
    if type_name == "iso-8601":
        return iso_datetime(value)
    if type_name == "duration":
        return duration(value)
    if type_name in MODELS and isinstance(value, dict):
        return _model(value, MODELS[type_name])
    return value


def _lookup(wire: dict[str, Any], path: str) -> Any:
    """The value at a key path such as ``properties.vmSize``; None where it is missing."""
    value: Any = wire
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _model(wire: dict[str, Any], attributes: tuple[Attribute, ...]) -> dict[str, Any]:
    """An object: the model's attributes in order, then what the server sent that the model lacks."""
    out = {key: _convert(_lookup(wire, path), type_name) for key, path, type_name in attributes}
    known = {path for _, path, _ in attributes}
    for key, value in wire.items():
        if key == "properties" and isinstance(value, dict) and any(p.startswith("properties.") for p in known):
            for name, item in value.items():
                if f"properties.{name}" not in known:
                    out.setdefault(name, item)
        elif key not in known:
            out.setdefault(key, value)
    return out


def iso_datetime(value: Any) -> Any:
    """An ISO 8601 time as msrest parses it and ``isoformat()`` writes it: ``...T03:27:20.051190+00:00``
    (no fraction when it is zero, no offset when none was sent); anything else as it is."""
    match = _DATETIME.match(value.upper()) if isinstance(value, str) else None
    if match is None:
        return value
    fraction = (match[2] or "")[:6].ljust(6, "0")  # (msrest keeps microseconds: six digits)
    try:
        return datetime.fromisoformat(f"{match[1]}.{fraction}{match[3] or ''}").isoformat()
    except ValueError:
        return value


def duration(value: Any) -> Any:
    """An ISO 8601 duration as ``str(timedelta)``: ``P7D`` -> ``7 days, 0:00:00``, ``PT1H`` -> ``1:00:00``;
    anything else (years, months, not a duration) as it is."""
    match = _DURATION.match(value.upper()) if isinstance(value, str) else None
    if match is None:
        return value
    weeks, days, hours, minutes, seconds = (float(part or 0) for part in match.groups())
    try:
        return str(timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds))
    except OverflowError:
        return value
