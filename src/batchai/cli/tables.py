"""``-o table`` of Batch AI and ARM resources, with the columns az's batchai and provider commands show.

Each function takes what the command returns (one resource or a list, already flattened) and gives the rows.
"""

from __future__ import annotations

from typing import Any

from batchai.cli.output import parent_name


def _each(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


def _state(resource: dict[str, Any], state: str) -> Any:
    """A resource being deleted shows 'deleting' whatever else its state says."""
    return "deleting" if resource.get("provisioningState") == "deleting" else resource.get(state)


def group_table(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "Name": g.get("name"),
            "Location": g.get("location"),
            "Status": (g.get("properties") or {}).get("provisioningState"),
        }
        for g in _each(result)
    ]


def workspace_table(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "Name": w.get("name"),
            "Resource Group": w.get("resourceGroup"),
            "Location": w.get("location"),
            "State": w.get("provisioningState"),
        }
        for w in _each(result)
    ]


def experiment_table(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "Name": e.get("name"),
            "Resource Group": e.get("resourceGroup"),
            "Workspace": parent_name(e.get("id", ""), "workspaces"),
            "State": e.get("provisioningState"),
        }
        for e in _each(result)
    ]


def cluster_table(result: Any) -> list[dict[str, Any]]:
    rows = []
    for c in _each(result):
        counts = c.get("nodeStateCounts") or {}
        rows.append(
            {
                "Name": c.get("name"),
                "Resource Group": c.get("resourceGroup"),
                "Workspace": parent_name(c.get("id", ""), "workspaces"),
                "VM Size": c.get("vmSize"),
                "State": _state(c, "allocationState"),
                **{
                    title: str(counts.get(f"{title.lower()}NodeCount") or 0)
                    for title in ("Idle", "Running", "Preparing", "Leaving", "Unusable")
                },
            }
        )
    return rows


def job_table(result: Any) -> list[dict[str, Any]]:
    rows = []
    for j in _each(result):
        cluster = j.get("cluster") or {}
        code = (j.get("executionInfo") or {}).get("exitCode")
        rows.append(
            {
                "Name": j.get("name"),
                "Cluster": cluster.get("id", "").rsplit("/", 1)[-1],
                "Cluster RG": cluster.get("resourceGroup"),
                "Cluster Workspace": parent_name(cluster.get("id", ""), "workspaces"),
                "Tool": j.get("toolType"),
                "Nodes": j.get("nodeCount"),
                "State": _state(j, "executionState"),
                "Exit code": "" if code is None else str(code),
            }
        )
    return rows


def file_server_table(result: Any) -> list[dict[str, Any]]:
    rows = []
    for f in _each(result):
        row: dict[str, Any] = {"Name": f.get("name"), "Resource Group": f.get("resourceGroup"), "Size": f.get("vmSize")}
        disks = f.get("dataDisks")
        if disks:
            row["Disks"] = f"{disks.get('diskCount')} x {disks.get('diskSizeInGb')} Gb"
        mount = f.get("mountSettings")
        if mount:
            row["Public IP"] = mount.get("fileServerPublicIp")
            row["Internal IP"] = mount.get("fileServerInternalIp")
            row["Mount Point"] = mount.get("mountPoint")
        rows.append(row)
    return rows


def job_file_table(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "Name": f["name"],
            "Type": f["fileType"],
            "Size": "" if f["fileType"] == "directory" else str(f["contentLength"]),
            "Modified": f["lastModified"] or " ",
        }
        for f in result
    ]


def setup_file_table(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "Name": f["name"],
            "Is directory": "yes" if f["is_directory"] else "no",
            "Size": "" if f["size"] is None else f["size"],
        }
        for f in result
    ]


def remote_login_table(result: Any) -> list[dict[str, Any]]:
    return [{"ID": n["nodeId"], "IP": n["ipAddress"], "SSH Port": int(n["port"])} for n in result]


def usage_table(result: Any) -> list[dict[str, Any]]:
    return [
        {"Value": u["name"]["localizedValue"], "Usage": u["currentValue"] or "0", "Limit": u["limit"] or "0"}
        for u in result
    ]
