"""``-o table`` rows of Batch AI resources: az's batchai columns, from what the server returns (flattened)."""

from __future__ import annotations

from typing import Any

from batchai.cli.output import flatten
from batchai.cli.tables import cluster_table, experiment_table, file_server_table, job_file_table, job_table

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws"


def test_a_cluster_row_names_its_workspace_and_node_counts() -> None:
    cluster: dict[str, Any] = {
        "id": f"{WS}/clusters/c",
        "name": "c",
        "type": "Microsoft.BatchAI/workspaces/clusters",
        "properties": {
            "vmSize": "STANDARD_NC6",
            "provisioningState": "succeeded",
            "allocationState": "steady",
            "nodeStateCounts": {"idleNodeCount": 1, "runningNodeCount": 2},
        },
    }
    (row,) = cluster_table(flatten(cluster))
    counts = ["Idle", "Running", "Preparing", "Leaving", "Unusable"]
    assert list(row) == ["Name", "Resource Group", "Workspace", "VM Size", "State", *counts]
    assert list(row.values()) == ["c", "rg", "ws", "STANDARD_NC6", "steady", "1", "2", "0", "0", "0"]
    cluster["properties"]["provisioningState"] = "deleting"
    assert cluster_table([flatten(cluster)])[0]["State"] == "deleting"


def test_a_job_row_names_its_cluster_and_exit_code() -> None:
    job: dict[str, Any] = {
        "id": f"{WS}/experiments/e/jobs/j",
        "name": "j",
        "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
        "properties": {
            "cluster": {"id": f"{WS}/clusters/c"},
            "toolType": "cntk",
            "nodeCount": 1,
            "provisioningState": "succeeded",
            "executionState": "failed",
            "executionInfo": {"exitCode": 0},
        },
    }
    (row,) = job_table(flatten(job))
    assert row == {
        "Name": "j",
        "Cluster": "c",
        "Cluster RG": "rg",
        "Cluster Workspace": "ws",
        "Tool": "cntk",
        "Nodes": 1,
        "State": "failed",
        "Exit code": "0",  # (a zero is shown, not dropped as empty)
    }
    job["properties"]["executionInfo"] = None
    assert job_table(flatten(job))[0]["Exit code"] == ""
    experiment = {"id": f"{WS}/experiments/e", "name": "e", "type": "Microsoft.BatchAI/workspaces/experiments"}
    assert experiment_table(flatten(experiment))[0]["Workspace"] == "ws"


def test_a_file_server_row_reads_the_sdk_s_key_names() -> None:
    server = {
        "id": f"{WS}/fileServers/nfs",
        "name": "nfs",
        "type": "Microsoft.BatchAI/workspaces/fileServers",
        "properties": {
            "vmSize": "STANDARD_D14",
            "dataDisks": {"diskCount": 2, "diskSizeInGB": 10},
            "mountSettings": {
                "mountPoint": "/mnt/data",
                "fileServerPublicIP": "1.2.3.4",
                "fileServerInternalIP": "10.0.0.4",
            },
        },
    }
    flat = flatten(server)  # named as az names them (the SDK models' attributes), not as on the wire
    assert flat["dataDisks"]["diskSizeInGb"] == 10 and flat["mountSettings"]["fileServerPublicIp"] == "1.2.3.4"
    assert file_server_table(flat) == [
        {
            "Name": "nfs",
            "Resource Group": "rg",
            "Size": "STANDARD_D14",
            "Disks": "2 x 10 Gb",
            "Public IP": "1.2.3.4",
            "Internal IP": "10.0.0.4",
            "Mount Point": "/mnt/data",
        }
    ]


def test_a_directory_in_a_job_file_list_has_no_size() -> None:
    model = {"contentLength": 7, "lastModified": "2026-01-02T03:04:05Z"}
    files = [
        {"name": "MODEL", "fileType": "directory", "properties": {"contentLength": 4096}},
        {"name": "m.dnn", "fileType": "file", "properties": model},
    ]
    rows = job_file_table(flatten(files, "File"))  # (az's File model: lastModified as Python writes a datetime)
    assert [(r["Size"], r["Modified"]) for r in rows] == [("", " "), ("7", "2026-01-02T03:04:05+00:00")]
