"""Printing results as az does: ``-o json|jsonc|table|tsv|yaml|none`` after an optional ``--query`` (JMESPath)."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from batchai.cli.az_shape import as_model, resource_model
from batchai.cli.errors import CliError

FORMATS = ("json", "jsonc", "table", "tsv", "yaml", "yamlc", "none")


def parent_name(resource_id: str, kind: str) -> str | None:
    """The name after ``kind`` (any case) in an ARM id: ``parent_name(id, "workspaces")``."""
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    if kind.lower() in lowered:
        i = lowered.index(kind.lower())
        return parts[i + 1] if i + 1 < len(parts) else None
    return None


def with_resource_groups(value: Any) -> Any:
    """az's rule: every object, nested ones too, whose ``id`` is a resource in a group gets ``resourceGroup``
    (a group's own id is not one)."""
    if isinstance(value, list):
        return [with_resource_groups(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: with_resource_groups(v) for k, v in value.items()}
    parts = str(out.get("id") or "").split("/")
    if "resourceGroup" not in out and len(parts) > 8 and parts[3].lower() == "resourcegroups":
        out["resourceGroup"] = parts[4]
    return out


def flatten(resource: Any, model: str | None = None) -> Any:
    """What a command returns as az shows it, ``resourceGroup`` added: a Batch AI resource (by its ``type``), or
    anything the command says is an SDK ``model``, as az printed that model (see ``az_shape``); any other ARM
    resource (a storage account) with ``properties`` merged into the top level."""
    if isinstance(resource, list):
        return [flatten(r, model) for r in resource]
    model = model or resource_model(resource)
    if model is not None:
        return with_resource_groups(as_model(resource, model))
    if not isinstance(resource, dict) or "id" not in resource:
        return with_resource_groups(resource)
    out = {k: v for k, v in resource.items() if k != "properties"}
    props = resource.get("properties")
    if isinstance(props, dict):
        for key, value in props.items():
            out.setdefault(key, value)
    return with_resource_groups(out)


def check_query(expression: str | None) -> None:
    """Refuse a malformed ``--query`` before anything is sent to the server."""
    if expression:
        try:
            jmespath.compile(expression)
        except JMESPathError as exc:
            raise CliError(f"argument --query: invalid JMESPath query '{expression}'", exit_code=2) from exc


def query(result: Any, expression: str | None) -> Any:
    """``expression`` applied to ``result``; objects it builds (``{a: x}``) keep their keys' order, as in az."""
    if not expression:
        return result
    try:
        return jmespath.search(expression, result, jmespath.Options(dict_cls=OrderedDict))
    except JMESPathError as exc:
        raise CliError(f"argument --query: invalid JMESPath query '{expression}': {exc}") from exc


# az's tables leave out these keys, and any value that is null, a list or an object.
_TABLE_SKIPS = frozenset({"id", "type", "etag"})


def _table_row(item: Any, sort_keys: bool) -> dict[str, Any]:
    if isinstance(item, dict):
        keys = sorted(item) if sort_keys else list(item)
        return {
            k[:1].upper() + k[1:]: item[k]
            for k in keys
            if k not in _TABLE_SKIPS and item[k] is not None and not isinstance(item[k], dict | list)
        }
    if isinstance(item, list):
        return {f"Column{i + 1}": value for i, value in enumerate(item)}
    return {"Result": item}


def render_table(result: Any, sort_keys: bool = True) -> str:
    """az's ``-o table``: a header, a rule of dashes under each column, a row per item; keys sorted unless
    they came from a ``--query`` or a command's own table."""
    from tabulate import tabulate

    rows = [_table_row(item, sort_keys) for item in (result if isinstance(result, list) else [result])]
    if not any(rows):
        return ""
    return str(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))


def _tsv_cell(value: Any) -> str:
    if isinstance(value, list):
        return str(len(value))  # az writes a list's length and an object's nothing: columns keep their place
    if isinstance(value, dict):
        return ""
    return value if isinstance(value, str) else str(value)


def render_tsv(result: Any) -> str:
    """az's ``-o tsv``: a line per item; an object's values by sorted key, unless a ``--query`` built it."""
    lines = []
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, OrderedDict):
            lines.append("\t".join(_tsv_cell(v) for v in item.values()))
        elif isinstance(item, dict):
            lines.append("\t".join(_tsv_cell(v) for _, v in sorted(item.items())))
        elif isinstance(item, list):
            lines.append("\t".join(_tsv_cell(v) for v in item))
        elif isinstance(item, bool):
            lines.append(str(item).lower())
        else:
            lines.append(_tsv_cell(item))
    return "\n".join(lines)


def emit(
    result: Any,
    fmt: str,
    expression: str | None,
    echo: Callable[[str], None],
    table: Callable[[Any], Any] | None = None,
) -> None:
    """Print ``result`` (already flattened) in format ``fmt``; ``table`` shapes rows for ``-o table``."""
    if result is None:
        return
    transform = table if fmt == "table" and not expression else None
    if transform is not None:
        result = transform(result)
    result = query(result, expression)
    if result is None or fmt == "none":  # az prints nothing for a null result, whatever the format
        return
    if fmt in ("json", "jsonc"):
        echo(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    elif fmt in ("yaml", "yamlc"):
        import yaml

        plain = json.loads(json.dumps(result))  # (safe_dump refuses the OrderedDicts of a --query)
        echo(yaml.safe_dump(plain, sort_keys=True, allow_unicode=True).rstrip("\n"))
    elif fmt == "table":
        text = render_table(result, sort_keys=not expression and transform is None)
        if text:
            echo(text)
    elif fmt == "tsv":
        text = render_tsv(result)
        if text:
            echo(text)
