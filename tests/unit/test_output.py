"""CLI output: az's flattening, tsv/table/json shapes and JMESPath."""

from __future__ import annotations

import pytest

from batchai.cli.errors import CliError
from batchai.cli.output import check_query, emit, flatten, render_tsv, with_resource_groups

CLUSTER_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w/clusters/c"
RESOURCE = {
    "id": CLUSTER_ID,
    "name": "c",
    "type": "Microsoft.BatchAI/workspaces/clusters",
    "properties": {"vmSize": "A", "currentNodeCount": 2},
}


def test_flatten_merges_properties_and_adds_resource_group() -> None:
    flat = flatten(RESOURCE)
    assert flat["vmSize"] == "A" and flat["resourceGroup"] == "rg" and "properties" not in flat
    assert flatten([RESOURCE])[0]["name"] == "c"
    assert flatten({"no": "id"}) == {"no": "id"}


def test_resource_groups_are_added_as_az_adds_them() -> None:
    job = {"id": CLUSTER_ID + "/x", "cluster": {"id": CLUSTER_ID}, "mounts": [{"id": CLUSTER_ID}]}
    shown = with_resource_groups(job)
    assert shown["resourceGroup"] == shown["cluster"]["resourceGroup"] == shown["mounts"][0]["resourceGroup"] == "rg"
    group = {"id": "/subscriptions/s/resourceGroups/rg", "properties": {"provisioningState": "Succeeded"}}
    assert with_resource_groups(group) == group  # a group is not in a group: az shows it as it is


def test_tsv_prints_a_line_per_item_like_az() -> None:
    assert render_tsv("x") == "x"
    assert render_tsv(True) == "true"
    assert render_tsv(["a", 1]) == "a\n1"  # a list's items are lines: az --query '[name, location]' -o tsv
    assert render_tsv([["a", 1]]) == "a\t1"
    # An object's values by sorted key; a nested object leaves an empty cell, a list its length, null "None".
    rows = [{"b": "x", "a": 1, "c": {"nested": 1}, "d": [1, 2], "e": None}, {"a": 2, "b": "y"}]
    assert render_tsv(rows) == "1\tx\t\t2\tNone\n2\ty"


def test_emit_applies_query_then_format() -> None:
    lines: list[str] = []
    emit(flatten(RESOURCE), "json", "vmSize", lines.append)
    assert lines == ['"A"']
    lines.clear()
    emit(flatten(RESOURCE), "tsv", "[name, currentNodeCount]", lines.append)
    assert lines == ["c\n2"]
    lines.clear()
    emit(flatten(RESOURCE), "tsv", "{z: name, a: vmSize}", lines.append)  # an object the query built: its order
    assert lines == ["c\tA"]
    lines.clear()
    emit(flatten(RESOURCE), "yaml", "{z: name, a: vmSize}", lines.append)
    assert lines == ["a: A\nz: c"]


def test_a_null_result_prints_nothing_as_in_az() -> None:
    lines: list[str] = []
    for fmt in ("json", "tsv", "table", "yaml"):
        emit(flatten(RESOURCE), fmt, "tags", lines.append)
        emit(None, fmt, None, lines.append)
    assert lines == []


def test_tables_are_az_s() -> None:
    lines: list[str] = []
    emit([flatten(RESOURCE)], "table", None, lines.append)
    # Keys sorted and capitalized, id and type left out, a rule of dashes under each header.
    header, rule, row = lines[0].splitlines()
    assert header.split() == ["CurrentNodeCount", "Name", "ResourceGroup", "VmSize"]
    assert rule.split() == ["-" * (len(h) + 2) for h in header.split()]  # (tabulate's padding, as az's)
    assert row.split() == ["2", "c", "rg", "A"]
    lines.clear()
    emit([flatten(RESOURCE)], "table", "[].{Z: name, A: vmSize}", lines.append)  # a query's columns: its order
    assert lines[0].splitlines()[0].split() == ["Z", "A"]
    lines.clear()
    rows = [{"name": "c"}]
    emit(rows, "table", None, lines.append, table=lambda rs: [{"Name": r["name"], "Empty": None} for r in rs])
    assert lines[0].splitlines()[0].split() == ["Name"]  # null cells leave the table, as in az


def test_bad_queries_are_refused_up_front() -> None:
    with pytest.raises(CliError, match="invalid JMESPath"):
        check_query("[[")
    check_query("a.b[0]")
