"""Api versions 2017-09-01-preview and 2018-03-01 (no workspaces) on the same data as 2018-05-01."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SUB, Server, arm_error, url, wait_for

OLD = ["2017-09-01-preview", "2018-03-01"]
GROUP = f"/subscriptions/{SUB}/resourceGroups/legacy"
P = f"{GROUP}/providers/Microsoft.BatchAI"


def cluster_body(tmp_path: Path) -> dict[str, Any]:
    return {
        "location": "westus",
        "properties": {
            "vmSize": "STANDARD_NC6",
            "scaleSettings": {"manual": {"targetNodeCount": 1}},
            "userAccountSettings": {"adminUserName": "me", "adminUserPassword": "pw-secret"},
            "nodeSetup": {
                "setupTask": {
                    "commandLine": "true",
                    "runElevated": False,
                    "stdOutErrPathPrefix": str(tmp_path / "setup"),
                }
            },
        },
    }


@pytest.mark.parametrize("api", OLD)
def test_clusters_and_jobs_directly_in_the_group(shared_server: Server, tmp_path: Path, api: str) -> None:
    http = shared_server.http
    group = f"/subscriptions/{SUB}/resourceGroups/legacy-{api}"
    p = f"{group}/providers/Microsoft.BatchAI"
    assert http.put(url(group, "2021-04-01"), json={"location": "westus"}).status_code in (200, 201)
    cluster = http.put(url(f"{p}/clusters/c1", api), json=cluster_body(tmp_path))
    assert cluster.status_code == 200, cluster.text
    body = cluster.json()
    assert body["id"] == f"{p}/clusters/c1" and body["type"] == "Microsoft.BatchAI/Clusters"
    assert body["location"] == "westus" and "pw-secret" not in cluster.text
    model = tmp_path / "model"
    job = http.put(
        url(f"{p}/jobs/j1", api),
        json={
            "location": "westus",
            "properties": {
                "experimentName": "exp1",
                "priority": 100,
                "cluster": {"id": f"{p}/clusters/c1"},
                "nodeCount": 1,
                "stdOutErrPathPrefix": str(tmp_path / "logs"),
                "outputDirectories": [{"id": "MODEL", "pathPrefix": str(model), "type": "model", "createNew": True}],
                "customToolkitSettings": {"commandLine": "echo weights > $AZ_BATCHAI_OUTPUT_MODEL/m.bin"},
            },
        },
    )
    assert job.status_code == 200, job.text
    props = job.json()["properties"]
    assert job.json()["id"] == f"{p}/jobs/j1" and props["experimentName"] == "exp1" and props["priority"] == 100
    assert props["cluster"]["id"] == f"{p}/clusters/c1"
    done = wait_for(
        lambda: (
            (r := http.get(url(f"{p}/jobs/j1", api)).json()["properties"])["executionState"] in ("succeeded", "failed")
            and r
        ),
        message="the job to end",
    )
    assert done["executionState"] == "succeeded", done
    files = http.post(url(f"{p}/jobs/j1/listOutputFiles", api) + "&outputdirectoryid=MODEL").json()["value"]
    assert [(f["name"], f["isDirectory"]) for f in files] == [("m.bin", False)]
    assert [j["name"] for j in http.get(url(f"{p}/jobs", api)).json()["value"]] == ["j1"]
    assert f"{p}/clusters/c1" in [
        c["id"]
        for c in http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.BatchAI/clusters", api)).json()["value"]
    ]
    # The same resources through 2018-05-01: the implicit workspace and the job's experiment.
    modern = http.get(url(f"{p}/workspaces/default/experiments/exp1/jobs/j1")).json()
    assert modern["properties"]["schedulingPriority"] == "high"
    assert http.get(url(f"{p}/workspaces/default/clusters/c1")).status_code == 200
    # Terminate, delete.
    assert http.post(url(f"{p}/jobs/j1/terminate", api)).status_code == 200
    assert http.delete(url(f"{p}/jobs/j1", api)).status_code == 200
    arm_error(http.get(url(f"{p}/jobs/j1", api)), 404)
    assert http.delete(url(f"{p}/clusters/c1", api)).status_code == 200
    assert http.get(url(f"{p}/clusters", api)).json()["value"] == []


def test_versions_are_checked_per_path(shared_server: Server) -> None:
    http = shared_server.http
    assert http.put(url(GROUP, "2021-04-01"), json={"location": "eastus"}).status_code in (200, 201)
    assert arm_error(http.get(url(f"{P}/clusters")), 400)["code"] == "InvalidApiVersionParameter"
    assert arm_error(http.get(url(f"{P}/workspaces", OLD[0])), 400)["code"] == "InvalidApiVersionParameter"
    bad = http.put(url(f"{P}/jobs/j", OLD[0]), json={"location": "x", "properties": {"nodeCount": "many"}})
    assert arm_error(bad, 400)["target"]
    assert http.get(url(f"{P}/jobs", OLD[0])).json()["value"] == []
    assert http.get(url("/providers/Microsoft.BatchAI/operations", OLD[0])).status_code == 200
