"""Generate ``src/batchai/cli/sdk_models.py``: the attributes az printed of the ``azure-mgmt-batchai`` models.

az showed what the SDK returned through knack's ``todict``: every attribute of the model, its name in camelCase.
This script reads the models' ``_attribute_map``s (needs ``azure-mgmt-batchai==7.0.0``) and writes, for each
model the CLI prints and each model inside them, its attributes in order as (az's key, wire key path, type)::

    python tools/gen_az_models.py > src/batchai/cli/sdk_models.py

``tests/unit/test_az_shape.py`` runs it and compares its output with the committed module.
"""

from __future__ import annotations

import re
import sys

import azure.mgmt.batchai.models as sdk

# The models the CLI prints: the resources and what the list commands return.
ROOTS = ("Workspace", "Experiment", "Cluster", "FileServer", "Job", "File", "RemoteLoginInformation", "Usage")
# msrest's catch-all for unknown keys; the SDK az used in June 2018 had none, and az showed none.
SKIPPED = frozenset({"additional_properties"})
_CAMEL = re.compile(r"(?!^)_([a-zA-Z])")  # knack.util.to_camel_case


def camel(name: str) -> str:
    """An attribute's name as knack's ``todict`` writes it: ``disk_size_in_gb`` -> ``diskSizeInGb``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def inner(type_name: str) -> str:
    """The model a type names, if any: ``[Job]`` -> ``Job``, ``{str}`` -> ``str``."""
    return type_name[1:-1] if type_name[:1] in "[{" else type_name


def attributes(model: str) -> list[tuple[str, str, str]]:
    cls = getattr(sdk, model)
    return [(camel(n), spec["key"], spec["type"]) for n, spec in cls._attribute_map.items() if n not in SKIPPED]


def reachable(roots: tuple[str, ...]) -> list[str]:
    """The roots and every model found in their attributes, sorted by name."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        todo += [inner(t) for _, _, t in attributes(model) if hasattr(sdk, inner(t))]
    return sorted(seen)


def render() -> str:
    """The module's text (formatted as ``ruff format`` leaves it)."""
    lines = [
        '"""The attributes az printed of the azure-mgmt-batchai 7.0.0 models, by tools/gen_az_models.py: do not edit.',
        "",
        "For each model, in the SDK's order: (az's key: the attribute's name in camelCase, the key path on the wire,",
        "the SDK's type: ``str``, ``int``, ``iso-8601``, ``duration``, ``object``, a model, ``[T]`` a list, ``{T}`` a",
        "dict).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "Attribute = tuple[str, str, str]",
        "",
        "MODELS: dict[str, tuple[Attribute, ...]] = {",
    ]
    for model in reachable(ROOTS):
        rows = [f'("{key}", "{wire}", "{type_name}"),' for key, wire, type_name in attributes(model)]
        one_line = f'    "{model}": ({rows[0]}),'
        if len(rows) == 1 and len(one_line) <= 120:  # (ruff format joins a one-item tuple that fits a line)
            lines.append(one_line)
        else:
            lines += [f'    "{model}": (', *(f"        {row}" for row in rows), "    ),"]
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
