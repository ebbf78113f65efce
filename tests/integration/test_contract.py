"""The wire contract: every resource the server returns, held against the official SDK's models
(azure-mgmt-batchai 7.0.0, api 2018-05-01): no unknown keys, every required key present, read-only keys
filled in, and the SDK's own deserializer reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, url
from tests.integration.jobkit import Bench, make_bench

models = pytest.importorskip("azure.mgmt.batchai.models")
msrest = pytest.importorskip("msrest")

# Read-only keys that are absent when there is nothing to say (no errors yet, a job not started, ...).
MAY_BE_ABSENT = {"errors", "startTime", "endTime", "exitCode", "stdOutErrPathSuffix", "nextLink", "downloadUrl"}


def check(cls: type, data: Any, where: str) -> None:
    """``data`` against the msrest model ``cls``: known keys only, required present, read-only filled."""
    assert isinstance(data, dict), f"{where}: expected an object, got {data!r}"
    amap: dict[str, dict[str, str]] = cls._attribute_map  # type: ignore[attr-defined]
    validation: dict[str, dict[str, Any]] = getattr(cls, "_validation", {})
    known: dict[str, set[str]] = {}
    for spec in amap.values():
        head, _, rest = spec["key"].partition(".")
        known.setdefault(head, set())
        if rest:
            known[head].add(rest)
    for key, item in data.items():
        assert key in known, f"{where}: unknown key '{key}' (the SDK's {cls.__name__} has {sorted(known)})"
        if known[key] and isinstance(item, dict):
            extra = set(item) - known[key]
            assert not extra, f"{where}.{key}: unknown keys {sorted(extra)}"
    for attr, spec in amap.items():
        value: Any = data
        for part in spec["key"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        rules = validation.get(attr, {})
        key = spec["key"].rsplit(".", 1)[-1]
        if value is None:
            assert not (rules.get("required") and not rules.get("readonly")), f"{where}: required '{spec['key']}'"
            assert not rules.get("readonly") or key in MAY_BE_ABSENT, f"{where}: read-only '{spec['key']}' missing"
            continue
        check_value(spec["type"], value, f"{where}.{spec['key']}")


def check_value(kind: str, value: Any, where: str) -> None:
    if kind.startswith("[") and kind.endswith("]"):
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            check_value(kind[1:-1], item, f"{where}[{i}]")
    elif kind.startswith("{"):
        assert isinstance(value, dict), f"{where}: expected a map"
    elif hasattr(models, kind):
        check(getattr(models, kind), value, where)
    elif kind in ("int", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer"
    elif kind in ("str", "iso-8601", "duration"):
        assert isinstance(value, str), f"{where}: expected a string"


def read_with_sdk(cls_name: str, data: dict[str, Any]) -> Any:
    classes = {k: v for k, v in vars(models).items() if isinstance(v, type)}
    return msrest.Deserializer(classes)(cls_name, json.loads(json.dumps(data)))


@pytest.fixture
def full(server: Server, tmp_path: Path) -> Bench:
    """One of every resource, in the states where most read-only fields are filled in."""
    bench = make_bench(server, "contract.rg", tmp_path)
    bench.cluster(
        target=1,
        nodeSetup={
            "setupTask": {
                "commandLine": "true",
                "stdOutErrPathPrefix": str(tmp_path),
                "secrets": [{"name": "S", "value": "hidden"}],
            }
        },
        userAccountSettings={"adminUserName": "me", "adminUserPassword": "pw"},
    )
    bench.wait_nodes(idle=1)
    bench.submit(
        "done",
        secrets=[{"name": "TOKEN", "value": "t0ken"}],
        outputDirectories=[{"id": "MODEL", "pathPrefix": str(tmp_path / "out")}],
        environmentVariables=[{"name": "A", "value": "b"}],
        constraints={"maxWallClockTime": "PT1H"},
        customToolkitSettings={"commandLine": "echo x > $AZ_BATCHAI_OUTPUT_MODEL/m; exit 3"},
    )
    bench.wait_job("done")
    body = {
        "properties": {
            "vmSize": "STANDARD_D2",
            "dataDisks": {"diskCount": 1, "diskSizeInGB": 10, "storageAccountType": "Standard_LRS"},
            "sshConfiguration": {"userAccountSettings": {"adminUserName": "me"}},
        }
    }
    assert server.http.put(url(f"{bench.ws}/fileServers/fs"), json=body).status_code == 200
    return bench


def test_resources_match_the_sdk_models(full: Bench) -> None:
    http = full.server.http
    ws = http.get(url(full.ws)).json()
    check(models.Workspace, ws, "workspace")
    cluster = http.get(url(f"{full.ws}/clusters/c")).json()
    check(models.Cluster, cluster, "cluster")
    job = http.get(url(full.job_path("done"))).json()
    check(models.Job, job, "job")
    assert job["properties"]["executionInfo"]["exitCode"] == 3 and job["properties"]["executionInfo"]["errors"]
    check(models.Experiment, http.get(url(f"{full.ws}/experiments/exp")).json(), "experiment")
    check(models.FileServer, http.get(url(f"{full.ws}/fileServers/fs")).json(), "file server")
    lists = {
        "WorkspaceListResult": url(
            f"/subscriptions/{'0' * 8}-0000-0000-0000-{'0' * 12}/providers/Microsoft.BatchAI/workspaces"
        ),
        "ClusterListResult": url(f"{full.ws}/clusters"),
        "JobListResult": url(f"{full.ws}/experiments/exp/jobs"),
        "ExperimentListResult": url(f"{full.ws}/experiments"),
        "FileServerListResult": url(f"{full.ws}/fileServers"),
        "OperationListResult": url("/providers/Microsoft.BatchAI/operations"),
        "ListUsagesResult": url(
            f"/subscriptions/{'0' * 8}-0000-0000-0000-{'0' * 12}/providers/Microsoft.BatchAI/locations/eastus/usages"
        ),
    }
    for name, path in lists.items():
        body = http.get(path).json()
        check(getattr(models, name), body, name)
        assert read_with_sdk(name, body).value is not None
    files = http.post(url(full.job_path("done") + "/listOutputFiles") + "&outputdirectoryid=MODEL").json()
    check(models.FileListResult, files, "files")
    nodes = http.post(url(f"{full.ws}/clusters/c/listRemoteLoginInformation")).json()
    check(models.RemoteLoginInformationListResult, nodes, "remote login")
    sdk_job = read_with_sdk("Job", job)
    assert sdk_job.execution_state == "failed" and sdk_job.constraints.max_wall_clock_time.total_seconds() == 3600
    assert read_with_sdk("Cluster", cluster).node_state_counts.idle_node_count == 1
    for text in (json.dumps(job), json.dumps(cluster)):
        assert "t0ken" not in text and "hidden" not in text and '"pw"' not in text


def test_errors_match_the_sdk_error_model(shared_server: Server) -> None:
    response = shared_server.http.get(url("/subscriptions/x/resourceGroups/missing"))
    assert response.status_code == 404
    check(models.CloudErrorBody, response.json()["error"], "error")
