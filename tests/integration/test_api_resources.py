"""The Batch AI resources over real HTTP: happy paths, bad input, auth, paging, cascades, restart."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import SUB, Server, arm_error, process_gone, url, wait_for

GROUP = f"/subscriptions/{SUB}/resourceGroups"


def ws_path(group: str, ws: str) -> str:
    return f"{GROUP}/{group}/providers/Microsoft.BatchAI/workspaces/{ws}"


def cluster_body(target: int = 2) -> dict[str, Any]:
    return {
        "properties": {
            "vmSize": "STANDARD_NC6",
            "scaleSettings": {"manual": {"targetNodeCount": target}},
            "userAccountSettings": {"adminUserName": "me", "adminUserPassword": "hunter2-secret"},
        }
    }


def job_body(cluster_id: str, **extra: Any) -> dict[str, Any]:
    props = {
        "cluster": {"id": cluster_id},
        "nodeCount": 1,
        "stdOutErrPathPrefix": "/tmp/batchai-test-logs",
        "customToolkitSettings": {"commandLine": "echo hi"},
    }
    props.update(extra)
    return {"properties": props}


def setup_workspace(server: Server, group: str, ws: str = "ws") -> str:
    assert server.http.put(url(f"{GROUP}/{group}", "2021-04-01"), json={"location": "eastus"}).status_code in (200, 201)
    response = server.http.put(url(ws_path(group, ws)), json={"location": "eastus"})
    assert response.status_code == 200, response.text
    return ws_path(group, ws)


def make_cluster(server: Server, ws: str, name: str = "c1", target: int = 2) -> str:
    response = server.http.put(url(f"{ws}/clusters/{name}"), json=cluster_body(target))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_resource_group_lifecycle_and_case_insensitive_paths(shared_server: Server) -> None:
    http = shared_server.http
    created = http.put(url(f"{GROUP}/RG-One", "2021-04-01"), json={"location": "eastus", "tags": {"a": "b"}})
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == f"{GROUP}/RG-One" and body["name"] == "RG-One" and body["tags"] == {"a": "b"}
    assert http.put(url(f"{GROUP}/RG-One", "2021-04-01"), json={"location": "eastus"}).status_code == 200
    # ARM matches fixed segments and names case-insensitively.
    lower = http.get(url(f"/subscriptions/{SUB}/resourcegroups/rg-one", "2021-04-01"))
    assert lower.status_code == 200 and lower.json()["name"] == "RG-One"
    moved = http.put(url(f"{GROUP}/RG-One", "2021-04-01"), json={"location": "westus"})
    assert arm_error(moved, 400)["code"] == "InvalidResourceGroupLocation"
    names = [g["name"] for g in http.get(url(GROUP, "2021-04-01")).json()["value"]]
    assert "RG-One" in names
    assert http.delete(url(f"{GROUP}/RG-One", "2021-04-01")).status_code == 200
    assert http.delete(url(f"{GROUP}/RG-One", "2021-04-01")).status_code == 204
    arm_error(http.get(url(f"{GROUP}/RG-One", "2021-04-01")), 404)


def test_authentication_is_required(shared_server: Server) -> None:
    path = url("/providers/Microsoft.BatchAI/operations")
    no_token = httpx.get(shared_server.endpoint + path)
    assert arm_error(no_token, 401)["code"] == "AuthenticationFailed"
    wrong = httpx.get(shared_server.endpoint + path, headers={"Authorization": "Bearer nope"})
    assert arm_error(wrong, 401)["code"] == "InvalidAuthenticationToken"
    created = httpx.put(
        shared_server.endpoint + url(f"{GROUP}/sneaky", "2021-04-01"),
        json={"location": "x"},
        headers={"Authorization": "Bearer nope"},
    )
    arm_error(created, 401)
    arm_error(shared_server.http.get(url(f"{GROUP}/sneaky", "2021-04-01")), 404)
    assert httpx.get(shared_server.endpoint + "/openapi.json").status_code == 200


def test_credentials_file_is_private(shared_server: Server) -> None:
    creds = shared_server.home / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    data = json.loads(creds.read_text())
    assert data["endpoint"] == shared_server.endpoint and len(data["token"]) >= 32


def test_api_version_is_required_and_checked(shared_server: Server) -> None:
    missing = shared_server.http.get("/providers/Microsoft.BatchAI/operations")
    assert arm_error(missing, 400)["code"] == "MissingApiVersionParameter"
    wrong = shared_server.http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.BatchAI/workspaces", "1999-01-01"))
    assert arm_error(wrong, 400)["code"] == "InvalidApiVersionParameter"


def test_workspace_experiment_cluster_file_server(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-ws")
    workspace = http.get(url(ws)).json()
    assert workspace["type"] == "Microsoft.BatchAI/workspaces" and workspace["location"] == "eastus"
    assert workspace["properties"]["provisioningState"] == "succeeded"
    patched = http.patch(url(ws), json={"tags": {"team": "ml"}})
    assert patched.status_code == 200 and patched.json()["tags"] == {"team": "ml"}

    experiment = http.put(url(f"{ws}/experiments/exp1"))
    assert experiment.status_code == 200
    assert experiment.json()["id"] == f"{ws}/experiments/exp1"

    cluster = http.put(url(f"{ws}/clusters/c1"), json=cluster_body())
    assert cluster.status_code == 200, cluster.text
    props = cluster.json()["properties"]
    assert props["scaleSettings"]["manual"] == {"targetNodeCount": 2, "nodeDeallocationOption": "requeue"}
    # No nodes yet: resizing until the engine has them (as Azure).
    assert props["vmPriority"] == "dedicated" and props["allocationState"] == "resizing"
    assert "adminUserPassword" not in props["userAccountSettings"]
    assert "hunter2" not in cluster.text
    resized = http.patch(
        url(f"{ws}/clusters/c1"),
        json={"properties": {"scaleSettings": {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 3}}}},
    )
    assert resized.status_code == 200
    assert resized.json()["properties"]["scaleSettings"]["autoScale"]["maximumNodeCount"] == 3
    changed = http.put(
        url(f"{ws}/clusters/c1"),
        json={**cluster_body(), "properties": {**cluster_body()["properties"], "vmSize": "OTHER"}},
    )
    assert arm_error(changed, 409)["code"] == "PropertyChangeNotAllowed"
    # A new PUT that changes only the scale says where scale changes go.
    rescaled = http.put(url(f"{ws}/clusters/c1"), json=cluster_body(target=1))
    assert "other scale settings; they change with PATCH" in arm_error(rescaled, 409)["message"]

    fs_body = {
        "properties": {
            "vmSize": "STANDARD_D2",
            "dataDisks": {"diskCount": 2, "diskSizeInGB": 10, "storageAccountType": "Standard_LRS"},
            "sshConfiguration": {"userAccountSettings": {"adminUserName": "me", "adminUserPassword": "pw-secret"}},
        }
    }
    server_response = http.put(url(f"{ws}/fileServers/fs1"), json=fs_body)
    assert server_response.status_code == 200, server_response.text
    assert "pw-secret" not in server_response.text
    assert server_response.json()["properties"]["mountSettings"]["mountPoint"]
    assert [f["name"] for f in http.get(url(f"{ws}/fileServers")).json()["value"]] == ["fs1"]
    assert http.delete(url(f"{ws}/fileServers/fs1")).status_code == 200
    arm_error(http.get(url(f"{ws}/fileServers/fs1")), 404)

    nodes = http.post(url(f"{ws}/clusters/c1/listRemoteLoginInformation")).json()["value"]
    assert all(n["ipAddress"] == "127.0.0.1" for n in nodes)
    by_sub = http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.BatchAI/workspaces")).json()["value"]
    assert ws in [w["id"] for w in by_sub]


def test_bad_names_and_bodies_create_nothing(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-bad")
    assert arm_error(http.put(url(ws_path("rg-bad", "bad name!")), json={"location": "x"}), 400)["code"] == (
        "InvalidResourceName"
    )
    assert arm_error(http.put(url(ws_path("rg-bad", "x" * 65)), json={"location": "x"}), 400)
    malformed = http.put(url(f"{ws}/clusters/c2"), content=b"{not json", headers={"content-type": "application/json"})
    assert arm_error(malformed, 400)["code"] == "InvalidRequestContent"
    unknown_key = http.put(url(f"{ws}/clusters/c2"), json={"properties": {"vmSize": "A", "scaleSetings": {}}})
    error = arm_error(unknown_key, 400)
    assert "scaleSetings" in error["message"]
    both = http.put(
        url(f"{ws}/clusters/c2"),
        json={
            "properties": {
                "vmSize": "A",
                "scaleSettings": {
                    "manual": {"targetNodeCount": 1},
                    "autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 1},
                },
            }
        },
    )
    assert arm_error(both, 400)["code"] == "InvalidScaleSettings"
    bad_auto = http.put(
        url(f"{ws}/clusters/c2"),
        json={
            "properties": {
                "vmSize": "A",
                "scaleSettings": {"autoScale": {"minimumNodeCount": 3, "maximumNodeCount": 1}},
            }
        },
    )
    arm_error(bad_auto, 400)
    assert http.get(url(f"{ws}/clusters")).json()["value"] == []
    missing_parent = http.put(url(ws_path("no-such-group", "ws")), json={"location": "x"})
    assert arm_error(missing_parent, 404)["code"] == "ResourceGroupNotFound"
    arm_error(http.put(url(f"{ws_path('rg-bad', 'nows')}/experiments/e")), 404)


def test_job_validation(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-jobs")
    cluster_id = make_cluster(shared_server, ws, target=2)
    http.put(url(f"{ws}/experiments/e"))
    jobs = f"{ws}/experiments/e/jobs"

    def bad(name: str, body: Any, status: int = 400) -> dict[str, Any]:
        error = arm_error(http.put(url(f"{jobs}/{name}"), json=body), status)
        assert http.get(url(f"{jobs}/{name}")).status_code == 404, "a refused job must not exist"
        return error

    two = job_body(cluster_id, pyTorchSettings={"pythonScriptFilePath": "x.py"})
    assert bad("two", two)["code"] == "InvalidToolkit"
    none = job_body(cluster_id)
    del none["properties"]["customToolkitSettings"]
    assert bad("none", none)["code"] == "InvalidToolkit"
    unknown = job_body(cluster_id.replace("/c1", "/nope"))
    assert bad("unknown", unknown)["code"] == "ClusterNotFound"
    assert bad("badid", job_body("not-an-id"))["target"] == "properties.cluster.id"
    assert bad("toomany", job_body(cluster_id, nodeCount=3))["code"] == "InvalidNodeCount"
    assert bad("zero", job_body(cluster_id, nodeCount=0))["code"] == "InvalidNodeCount"
    assert bad("bool", job_body(cluster_id, nodeCount=True))["target"] == "properties.nodeCount"
    nul = bad("nul", job_body(cluster_id, customToolkitSettings={"commandLine": "echo a\u0000b"}))
    assert nul["target"] == "properties.customToolkitSettings.commandLine" and "NUL" in nul["message"], nul
    nul_env = bad("nulenv", job_body(cluster_id, environmentVariables=[{"name": "A", "value": "x\u0000"}]))
    assert nul_env["target"] == "properties.environmentVariables[0].value", nul_env
    no_prefix = job_body(cluster_id)
    del no_prefix["properties"]["stdOutErrPathPrefix"]
    bad("noprefix", no_prefix)
    bad("dur", job_body(cluster_id, constraints={"maxWallClockTime": "forever"}))
    bad("prio", job_body(cluster_id, schedulingPriority="urgent"))
    bad("envname", job_body(cluster_id, environmentVariables=[{"name": "1BAD", "value": "x"}]))
    bad(
        "dupout",
        job_body(cluster_id, outputDirectories=[{"id": "M", "pathPrefix": "/tmp"}, {"id": "M", "pathPrefix": "/tmp"}]),
    )
    bad(
        "share",
        job_body(
            cluster_id,
            mountVolumes={
                "azureFileShares": [
                    {"azureFileUrl": "https://nosuchacct.file.core.windows.net/logs", "relativeMountPath": "logs"}
                ]
            },
        ),
    )
    bad(
        "url",
        job_body(
            cluster_id, mountVolumes={"azureFileShares": [{"azureFileUrl": "ftp://x/y", "relativeMountPath": "logs"}]}
        ),
    )
    bad("bad name", job_body(cluster_id))
    assert http.get(url(jobs)).json()["value"] == []


def test_job_create_defaults_secrets_and_terminate(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-job1")
    cluster_id = make_cluster(shared_server, ws)
    http.put(url(f"{ws}/experiments/e"))
    body = job_body(
        cluster_id,
        secrets=[{"name": "API_KEY", "value": "s3cr3t-value"}],
        constraints={"maxWallClockTime": "1.02:00:00"},
        schedulingPriority="High",
        containerSettings={
            "imageSourceRegistry": {"image": "ubuntu", "credentials": {"username": "u", "password": "registry-pass"}}
        },
    )
    created = http.put(url(f"{ws}/experiments/e/jobs/j1"), json=body)
    assert created.status_code == 200, created.text
    props = created.json()["properties"]
    assert props["executionState"] == "queued" and props["toolType"] == "custom"
    assert props["schedulingPriority"] == "high"
    assert props["constraints"]["maxWallClockTime"] == "P1DT2H"
    assert props["secrets"] == [{"name": "API_KEY"}]
    assert props["jobOutputDirectoryPathSegment"].startswith(f"{SUB}/rg-job1/workspaces/ws/experiments/e/jobs/j1/")
    for response in (created, http.get(url(f"{ws}/experiments/e/jobs/j1")), http.get(url(f"{ws}/experiments/e/jobs"))):
        assert "s3cr3t-value" not in response.text and "registry-pass" not in response.text
    assert http.put(url(f"{ws}/experiments/e/jobs/j1"), json=body).status_code == 200
    changed = http.put(url(f"{ws}/experiments/e/jobs/j1"), json=job_body(cluster_id))
    assert arm_error(changed, 409)["code"] == "JobAlreadyExists"
    # No container engine runs here: the job fails with an error that says so.
    ended = wait_for(
        lambda: (
            (p := http.get(url(f"{ws}/experiments/e/jobs/j1")).json()["properties"])["executionState"] == "failed" and p
        ),
        message="the job to fail",
    )
    assert ended["executionInfo"]["errors"][0]["code"] == "ContainerEngineNotFound"
    assert "docker or podman" in ended["executionInfo"]["errors"][0]["message"]
    log = (shared_server.home / "test-server.log").read_text()
    assert "s3cr3t-value" not in log


def test_paging_with_maxresults_and_next_link(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-page")
    for i in range(5):
        assert http.put(url(f"{ws}/experiments/e{i}")).status_code == 200
    first = http.get(url(f"{ws}/experiments") + "&maxresults=2").json()
    assert len(first["value"]) == 2 and first["nextLink"]
    seen = [e["name"] for e in first["value"]]
    link = first["nextLink"]
    while link:
        page = http.get(link).json()
        seen += [e["name"] for e in page["value"]]
        link = page.get("nextLink")
    assert seen == [f"e{i}" for i in range(5)]
    arm_error(http.get(url(f"{ws}/experiments") + "&maxresults=0"), 400)
    arm_error(http.get(url(f"{ws}/experiments") + "&maxresults=1001"), 400)


def test_deleting_parents_deletes_children_and_fails_jobs(shared_server: Server) -> None:
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-cascade")
    cluster_id = make_cluster(shared_server, ws)
    http.put(url(f"{ws}/experiments/e"))
    marker = shared_server.home / "cascade-pid"
    body = job_body(cluster_id, customToolkitSettings={"commandLine": f"echo $$ > {marker}; exec sleep 60"})
    assert http.put(url(f"{ws}/experiments/e/jobs/j"), json=body).status_code == 200
    wait_for(lambda: marker.exists() and marker.read_text().strip(), message="the job to start")
    pid = int(marker.read_text())
    # Deleting the cluster stops and fails the job that ran on it; the job itself stays.
    assert http.delete(url(f"{ws}/clusters/c1")).status_code == 200
    job = http.get(url(f"{ws}/experiments/e/jobs/j")).json()["properties"]
    assert job["executionState"] == "failed"
    assert job["executionInfo"]["errors"][-1]["code"] == "ClusterDeleted"
    assert process_gone(pid)
    # Deleting the experiment deletes its jobs; deleting the group deletes the workspace.
    assert http.delete(url(f"{ws}/experiments/e")).status_code == 200
    arm_error(http.get(url(f"{ws}/experiments/e/jobs/j")), 404)
    make_cluster(shared_server, ws, "c2")
    assert http.delete(url(f"{GROUP}/rg-cascade", "2021-04-01")).status_code == 200
    assert arm_error(http.get(url(ws)), 404)["code"] == "ResourceGroupNotFound"
    # Creating a child under a deleted parent is refused.
    arm_error(http.put(url(f"{ws}/clusters/c3"), json=cluster_body()), 404)


def test_concurrent_deletes_delete_once(shared_server: Server) -> None:
    """Deletes of one resource sent at once: one answers 200, the others 204 (it is gone), as each would alone."""
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-racing")
    make_cluster(shared_server, ws, "c", target=1)
    assert http.put(url(f"{ws}/experiments/e")).status_code == 200
    assert http.put(url(f"{ws}/experiments/e/jobs/j"), json=job_body(f"{ws}/clusters/c")).status_code == 200
    log = shared_server.home / "test-server.log"
    logged = log.stat().st_size
    for path in (f"{ws}/experiments/e/jobs/j", f"{ws}/experiments/e", f"{ws}/clusters/c", ws):
        start = threading.Barrier(3)

        def delete(path: str = path, start: threading.Barrier = start) -> int:
            with httpx.Client(base_url=http.base_url, headers=http.headers, timeout=60) as client:
                start.wait()
                return client.delete(url(path)).status_code

        with ThreadPoolExecutor(3) as pool:
            codes = sorted(pool.map(lambda _: delete(), range(3)))
        assert codes == [200, 204, 204], (path, codes)
        arm_error(http.get(url(path)), 404)
    with log.open() as text:
        text.seek(logged)
        assert "Warning" not in text.read()


def test_a_lone_surrogate_is_refused_and_stores_nothing(shared_server: Server) -> None:
    """JSON may escape half a UTF-16 pair (``\\ud800``), which no UTF-8 text holds: stored, it would make every
    list that shows it fail. It is refused; a whole pair (an emoji) is text like any other."""
    http = shared_server.http
    ws = setup_workspace(shared_server, "rg-surrogate")
    cluster_id = make_cluster(shared_server, ws, target=1)
    assert http.put(url(f"{ws}/experiments/e")).status_code == 200
    job = json.dumps(job_body(cluster_id, customToolkitSettings={"commandLine": "echo @"})).replace("@", "\\ud800")
    json_type = {"content-type": "application/json"}
    refused = http.put(url(f"{ws}/experiments/e/jobs/j"), content=job.encode(), headers=json_type)
    assert (
        arm_error(refused, 400)["code"] == "InvalidRequestContent" and "surrogate" in refused.json()["error"]["message"]
    )
    arm_error(http.get(url(f"{ws}/experiments/e/jobs/j")), 404)
    tags = b'{"location": "eastus", "tags": {"team": "\\udfff"}}'
    arm_error(http.put(url(f"{GROUP}/rg-surrogate2", "2021-04-01"), content=tags, headers=json_type), 400)
    arm_error(http.get(url(f"{GROUP}/rg-surrogate2", "2021-04-01")), 404)
    emoji = b'{"location": "eastus", "tags": {"team": "\\ud83d\\ude00"}}'
    made = http.put(url(f"{GROUP}/rg-surrogate3", "2021-04-01"), content=emoji, headers=json_type)
    assert made.status_code in (200, 201) and made.json()["tags"] == {"team": "\U0001f600"}
    assert http.get(url(f"{GROUP}", "2021-04-01")).status_code == 200


def test_operations_usages_and_openapi(shared_server: Server) -> None:
    http = shared_server.http
    ops = http.get(url("/providers/Microsoft.BatchAI/operations")).json()["value"]
    assert "Microsoft.BatchAI/workspaces/read" in [o["name"] for o in ops]
    usages = http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.BatchAI/locations/eastus/usages")).json()
    assert usages["value"][0]["unit"] == "Count" and usages["value"][0]["limit"] >= 1
    spec = http.get("/openapi.json").json()
    assert any("/jobs/{job}" in p for p in spec["paths"])


def test_everything_survives_a_restart(server: Server) -> None:
    ws = setup_workspace(server, "rg-restart")
    cluster_id = make_cluster(server, ws)
    server.http.put(url(f"{ws}/experiments/e"))
    created = server.http.put(url(f"{ws}/experiments/e/jobs/j"), json=job_body(cluster_id)).json()
    token = server.token
    server.restart()
    assert server.token == token, "the token is created once, at first start"
    after = server.http.get(url(f"{ws}/experiments/e/jobs/j")).json()
    for key in ("jobOutputDirectoryPathSegment", "creationTime", "customToolkitSettings", "cluster"):
        assert after["properties"][key] == created["properties"][key]
    assert server.http.get(url(f"{ws}/clusters/c1")).json()["id"] == cluster_id
