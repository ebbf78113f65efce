"""Printing results as az does: ``-o json|jsonc|table|tsv|yaml|none`` after an optional ``--query`` (JMESPath)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from batchai.cli.errors import CliError

FORMATS = ("json", "jsonc", "table", "tsv", "yaml", "yamlc", "none")


def resource_group_of(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    if "resourcegroups" in lowered:
        i = lowered.index("resourcegroups")
        return parts[i + 1] if i + 1 < len(parts) else None
    return None


def flatten(resource: Any) -> Any:
    """An ARM resource as az shows it: ``properties`` merged into the top level, ``resourceGroup`` added."""
    if isinstance(resource, list):
        return [flatten(r) for r in resource]
    if not isinstance(resource, dict) or "id" not in resource:
        return resource
    out = {k: v for k, v in resource.items() if k != "properties"}
    props = resource.get("properties")
    if isinstance(props, dict):
        for key, value in props.items():
            out.setdefault(key, value)
    group = resource_group_of(str(resource["id"]))
    if group:
        out["resourceGroup"] = group
    for key in ("cluster", "fileServer"):
        if isinstance(out.get(key), dict) and "id" in out[key]:
            out[key] = {**out[key], "resourceGroup": resource_group_of(out[key]["id"])}
    return out


def check_query(expression: str | None) -> None:
    """Refuse a malformed ``--query`` before anything is sent to the server."""
    if expression:
        try:
            jmespath.compile(expression)
        except JMESPathError as exc:
            raise CliError(f"argument --query: invalid JMESPath query '{expression}'", exit_code=2) from exc


def query(result: Any, expression: str | None) -> Any:
    if not expression:
        return result
    try:
        return jmespath.search(expression, result)
    except JMESPathError as exc:
        raise CliError(f"argument --query: invalid JMESPath query '{expression}': {exc}") from exc


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _rows(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    rows = []
    for item in items:
        if isinstance(item, dict):
            rows.append({k: v for k, v in item.items() if not isinstance(v, dict | list)})
        else:
            rows.append({"Result": item})
    return rows


def _camel_title(key: str) -> str:
    if " " in key or key[:1].isupper():
        return key
    out = "".join(" " + c if c.isupper() else c for c in key)
    return out[:1].upper() + out[1:]


def render_table(result: Any) -> str:
    rows = _rows(result)
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(_camel_title(column), overflow="fold")
    for row in rows:
        table.add_row(*(_scalar(row.get(c)) for c in columns))
    console = Console(width=200, no_color=True, highlight=False, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get().rstrip("\n")


def render_tsv(result: Any) -> str:
    if isinstance(result, list) and all(not isinstance(v, dict | list) for v in result):
        return "\t".join(_scalar(v) for v in result)
    items = result if isinstance(result, list) else [result]
    lines = []
    for item in items:
        if isinstance(item, dict):
            lines.append("\t".join(_scalar(v) for v in item.values() if not isinstance(v, dict | list)))
        elif isinstance(item, list):
            lines.append("\t".join(_scalar(v) for v in item))
        else:
            lines.append(_scalar(item))
    return "\n".join(lines)


def emit(
    result: Any,
    fmt: str,
    expression: str | None,
    echo: Callable[[str], None],
    table: Callable[[Any], Any] | None = None,
) -> None:
    """Print ``result`` (already flattened) in format ``fmt``; ``table`` shapes rows for ``-o table``."""
    if result is None and not expression:
        return
    if fmt == "table" and table is not None and not expression:
        result = table(result)
    result = query(result, expression)
    if fmt == "none":
        return
    if fmt in ("json", "jsonc"):
        echo(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    elif fmt in ("yaml", "yamlc"):
        import yaml

        echo(yaml.safe_dump(result, sort_keys=True, allow_unicode=True).rstrip("\n"))
    elif fmt == "table":
        text = render_table(result)
        if text:
            echo(text)
    elif fmt == "tsv":
        text = render_tsv(result)
        if text:
            echo(text)
