"""CLI output: az's flattening, tsv/table/json shapes and JMESPath."""

from __future__ import annotations

import pytest

from batchai.cli.errors import CliError
from batchai.cli.output import check_query, emit, flatten, render_tsv

RESOURCE = {
    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w/clusters/c",
    "name": "c",
    "type": "Microsoft.BatchAI/workspaces/clusters",
    "properties": {"vmSize": "A", "currentNodeCount": 2},
}


def test_flatten_merges_properties_and_adds_resource_group() -> None:
    flat = flatten(RESOURCE)
    assert flat["vmSize"] == "A" and flat["resourceGroup"] == "rg" and "properties" not in flat
    assert flatten([RESOURCE])[0]["name"] == "c"
    assert flatten({"no": "id"}) == {"no": "id"}


def test_tsv_prints_scalars_like_az() -> None:
    assert render_tsv("x") == "x"
    assert render_tsv(["a", 1]) == "a\t1"
    assert render_tsv([{"a": 1, "b": "x", "c": {"nested": 1}}, {"a": 2, "b": "y"}]) == "1\tx\n2\ty"


def test_emit_applies_query_then_format() -> None:
    lines: list[str] = []
    emit(flatten(RESOURCE), "json", "vmSize", lines.append)
    assert lines == ['"A"']
    lines.clear()
    emit(flatten(RESOURCE), "tsv", "[name, currentNodeCount]", lines.append)
    assert lines == ["c\t2"]
    lines.clear()
    emit([flatten(RESOURCE)], "table", None, lines.append)
    assert "Vm Size" in lines[0] and "Current Node Count" in lines[0]


def test_bad_queries_are_refused_up_front() -> None:
    with pytest.raises(CliError, match="invalid JMESPath"):
        check_query("[[")
    check_query("a.b[0]")
