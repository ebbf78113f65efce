"""What one request may ask of the nodes (sizes, process counts, wall-clock limits, paths, variables) is
bounded and checked: bad values are refused with a 400 and change nothing, and the scheduler keeps going."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, arm_error, url, wait_for
from tests.integration.jobkit import Bench, make_bench


@pytest.fixture(scope="module")
def bench(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Bench:
    bench = make_bench(shared_server, "limits.rg", tmp_path_factory.mktemp("limits"))
    bench.cluster("c", target=1)
    bench.wait_nodes("c", idle=1)
    return bench


def put_job(bench: Bench, name: str, **props: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "cluster": {"id": f"{bench.ws}/clusters/c"},
        "nodeCount": 1,
        "stdOutErrPathPrefix": str(bench.tmp / "logs"),
        "customToolkitSettings": {"commandLine": "true"},
    }
    body.update(props)
    return bench.server.http.put(url(bench.job_path(name)), json={"properties": body})


def refused(response: httpx.Response, target: str, words: str) -> None:
    error = arm_error(response, 400)
    assert error["target"] == target and words in error["message"], error


def test_cluster_sizes_are_bounded(bench: Bench) -> None:
    http = bench.server.http
    huge = {"properties": {"vmSize": "A", "scaleSettings": {"manual": {"targetNodeCount": 2**64}}}}
    refused(http.put(url(f"{bench.ws}/clusters/huge"), json=huge), "properties.scaleSettings.manual", "at most 1000")
    auto = {"vmSize": "A", "scaleSettings": {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 10**6}}}
    refused(
        http.put(url(f"{bench.ws}/clusters/huge"), json={"properties": auto}),
        "properties.scaleSettings.autoScale",
        "at most 1000",
    )
    assert http.get(url(f"{bench.ws}/clusters/huge")).status_code == 404  # nothing made
    resize = {"properties": {"scaleSettings": {"manual": {"targetNodeCount": 99999999999999}}}}
    refused(http.patch(url(f"{bench.ws}/clusters/c"), json=resize), "properties.scaleSettings.manual", "at most")
    assert bench.cluster_state("c")["scaleSettings"]["manual"]["targetNodeCount"] == 1  # unchanged


def test_process_counts_and_wall_clock_limits_are_bounded(bench: Bench) -> None:
    tf = {"pythonScriptFilePath": "x.py", "workerCount": 10**9}
    refused(
        put_job(bench, "tf", customToolkitSettings=None, tensorFlowSettings=tf),
        "properties.tensorFlowSettings.workerCount",
        "at most 256",
    )
    torch = {"pythonScriptFilePath": "x.py", "processCount": 2**40}
    refused(
        put_job(bench, "pt", customToolkitSettings=None, pyTorchSettings=torch),
        "properties.pyTorchSettings.processCount",
        "at most",
    )
    for limit, words in (
        ("P99999999D", "at most 3650 days"),
        ("P1000000000D", "out of range"),
        (1e300, "out of range"),
    ):
        refused(
            put_job(bench, "long", constraints={"maxWallClockTime": limit}),
            "properties.constraints.maxWallClockTime",
            words,
        )
    assert put_job(bench, "year", constraints={"maxWallClockTime": "P365D"}).status_code == 200
    # Nothing of the refused jobs exists, and the scheduler still runs the rest.
    assert bench.server.http.get(url(bench.job_path("tf"))).status_code == 404
    assert bench.wait_job("year")["executionState"] == "succeeded"


def test_paths_on_the_node_stay_where_they_belong(bench: Bench) -> None:
    out = str(bench.tmp / "out")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stdOutErrPathPrefix": "relative/logs"}, "properties.stdOutErrPathPrefix"),
        ({"stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/logs/../../x"}, "properties.stdOutErrPathPrefix"),
        ({"outputDirectories": [{"id": "O", "pathPrefix": ""}]}, "properties.outputDirectories[0].pathPrefix"),
        (
            {"outputDirectories": [{"id": "O", "pathPrefix": f"{out}/../.."}]},
            "properties.outputDirectories[0].pathPrefix",
        ),
        (
            {"outputDirectories": [{"id": "O", "pathPrefix": out, "pathSuffix": "../../.."}]},
            "properties.outputDirectories[0].pathSuffix",
        ),
        (
            {"environmentVariables": [{"name": "AZ_BATCHAI_JOB_MOUNT_ROOT", "value": "/"}]},
            "properties.environmentVariables[0].name",
        ),
        ({"secrets": [{"name": "TOKEN", "value": None}]}, "properties.secrets[0].value"),
        ({"secrets": [{"name": "TOKEN", "value": "a\u0000b"}]}, "properties.secrets[0].value"),
        ({"environmentVariables": [{"name": "V", "value": "a\u0000b"}]}, "properties.environmentVariables[0].value"),
        ({"jobPreparation": {"commandLine": " "}}, "properties.jobPreparation.commandLine"),
    ]
    for props, target in cases:
        error = arm_error(put_job(bench, "bad", **props), 400)
        assert error["target"] == target, (props, error)
    assert bench.server.http.get(url(bench.job_path("bad"))).status_code == 404
    assert not Path("relative").exists() and not (bench.tmp / "x").exists()
    # A subscription id is a name too: it becomes part of every output path.
    dotted = bench.server.http.get(
        url("/subscriptions/%2e%2e/resourceGroups/limits.rg/providers/Microsoft.BatchAI/workspaces")
    )
    assert arm_error(dotted, 400)["target"] == "subscription"
    # A container or share named '..' in mountVolumes does not reach past its account.
    blob = {"azureBlobFileSystems": [{"accountName": "acct", "containerName": "../../..", "relativeMountPath": "h"}]}
    refused(
        put_job(bench, "bad", mountVolumes=blob),
        "properties.mountVolumes.azureBlobFileSystems[0].containerName",
        "invalid",
    )
    share = {"azureFileShares": [{"azureFileUrl": "https://acct.file.core.windows.net/..", "relativeMountPath": "s"}]}
    refused(
        put_job(bench, "bad", mountVolumes=share), "properties.mountVolumes.azureFileShares[0].azureFileUrl", "invalid"
    )
    setup = {"setupTask": {"commandLine": "true", "stdOutErrPathPrefix": "/tmp/../etc"}}
    body = {"properties": {"vmSize": "A", "scaleSettings": {"manual": {"targetNodeCount": 0}}, "nodeSetup": setup}}
    response = bench.server.http.put(url(f"{bench.ws}/clusters/setup"), json=body)
    refused(response, "properties.nodeSetup.setupTask.stdOutErrPathPrefix", "'..'")


def test_an_empty_name_is_not_found_rather_than_redirected(bench: Bench) -> None:
    response = bench.server.http.get(url(f"{bench.ws}/clusters/"))
    assert response.status_code == 404 and "error" in response.json()
    result = bench.server.cli("cluster", "show", "-g", "limits.rg", "-w", "ws", "-n", "")
    assert result.code != 0 and result.stderr.startswith("ERROR:")


def test_no_job_starts_on_a_cluster_being_deleted(shared_server: Server, tmp_path: Path) -> None:
    bench = make_bench(shared_server, "deleting.rg", tmp_path)
    bench.cluster("c", target=1)
    bench.wait_nodes("c", idle=1)
    # It ignores SIGTERM: the cluster stays "deleting" for the grace period (3 s in tests) until it is killed.
    bench.submit("long", customToolkitSettings={"commandLine": "trap '' TERM; sleep 30 & wait; sleep 30"})
    bench.wait_job("long", ("running",))
    http = shared_server.http
    # The delete waits for the running job to stop: meanwhile the cluster is "deleting".
    with httpx.Client(base_url=shared_server.endpoint, headers=http.headers, timeout=60) as other:
        done: list[int] = []
        thread = threading.Thread(target=lambda: done.append(other.delete(url(f"{bench.ws}/clusters/c")).status_code))
        thread.start()
        wait_for(
            lambda: bench.cluster_state("c")["provisioningState"] == "deleting", message="the cluster to be deleting"
        )
        error = arm_error(put_job(bench, "late"), 409)
        assert error["code"] == "ClusterBeingDeleted"
        resize = {"properties": {"scaleSettings": {"manual": {"targetNodeCount": 2}}}}
        assert arm_error(http.patch(url(f"{bench.ws}/clusters/c"), json=resize), 409)["code"] == "ClusterBeingDeleted"
        thread.join(timeout=60)
    assert done == [200]
    assert bench.job("long")["executionState"] == "failed"
    assert http.get(url(bench.job_path("late"))).status_code == 404


def test_a_location_is_a_location_name(bench: Bench) -> None:
    groups = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups"
    for location in ("", "a\u0000b", " eastus"):
        response = bench.server.http.put(url(f"{groups}/loc.rg", "2021-04-01"), json={"location": location})
        assert arm_error(response, 400)["target"] == "location", location
    assert bench.server.http.get(url(f"{groups}/loc.rg", "2021-04-01")).status_code == 404
    assert bench.server.http.put(url(f"{groups}/loc.rg", "2021-04-01"), json={"location": "East US"}).status_code == 201


def test_links_a_job_makes_in_a_host_output_folder_are_not_served(bench: Bench, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the link's holder")
    out = tmp_path / "out"
    command = (
        f"mkdir -p $AZ_BATCHAI_OUTPUT_O/real && echo mine > $AZ_BATCHAI_OUTPUT_O/real/model.bin && "
        f"ln -s {secret} $AZ_BATCHAI_OUTPUT_O/link.txt && ln -s {tmp_path} $AZ_BATCHAI_OUTPUT_O/linkdir && "
        "printf x > $AZ_BATCHAI_OUTPUT_O/$(printf 'bad\\377name')"
    )
    bench.submit(
        "links", customToolkitSettings={"commandLine": command}, outputDirectories=[{"id": "O", "pathPrefix": str(out)}]
    )
    assert bench.wait_job("links")["executionState"] == "succeeded"
    assert set(bench.files("links", "O")) == {"real"}  # no links, no name that is not UTF-8
    assert set(bench.files("links", "O", "real")) == {"model.bin"}
    response = bench.server.http.post(
        url(bench.job_path("links") + "/listOutputFiles") + "&outputdirectoryid=O&directory=linkdir"
    )
    assert arm_error(response, 404)["code"] == "PathNotFound"
    # A file that becomes a link after its download link was made is not followed either.
    link = bench.files("links", "O", "real")["model.bin"]["downloadUrl"]
    assert httpx.get(link).text == "mine\n"
    part = httpx.get(link, headers={"Range": "bytes=2-"})  # what `job file stream` asks for
    assert (part.status_code, part.text, part.headers["content-range"]) == (206, "ne\n", "bytes 2-4/5")
    past = httpx.get(link, headers={"Range": "bytes=5-"})
    assert (past.status_code, past.headers["content-range"]) == (416, "bytes */5")
    assert httpx.get(link, headers={"Range": "bytes=-1-"}).status_code == 200  # not a range served: all of it
    model = next(out.rglob("model.bin"))
    model.unlink()
    model.symlink_to(secret)
    assert httpx.get(link).status_code == 404


def test_a_storage_account_takes_azure_skus_and_keeps_its_location(bench: Bench) -> None:
    group = f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{bench.group}"
    accounts = f"{group}/providers/Microsoft.Storage/storageAccounts"
    http = bench.server.http
    weird = http.put(url(f"{accounts}/weirdsku", "2023-01-01"), json={"sku": {"name": "Weird_SKU"}})
    assert arm_error(weird, 400)["target"] == "sku.name"
    assert http.get(url(f"{accounts}/weirdsku", "2023-01-01")).status_code == 404
    made = http.put(url(f"{accounts}/skuok", "2023-01-01"), json={"sku": {"name": "standard_grs"}, "kind": "storagev2"})
    assert (
        made.status_code in (200, 201)
        and made.json()["sku"]["name"] == "Standard_GRS"
        and made.json()["kind"] == "StorageV2"
    )
    moved = http.put(url(f"{accounts}/skuok", "2023-01-01"), json={"location": "westeurope"})
    assert arm_error(moved, 400)["code"] == "LocationCannotBeChanged"


def test_output_paths_are_checked_again_once_their_variables_are_expanded(bench: Bench, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    check = 'test -d "$AZ_BATCHAI_OUTPUT_Mixed" && test "$AZ_BATCHAI_OUTPUT_Mixed" = "$AZ_BATCHAI_OUTPUT_MIXED"'
    bench.submit(
        "mixed", customToolkitSettings={"commandLine": check}, outputDirectories=[{"id": "Mixed", "pathPrefix": out}]
    )
    assert bench.wait_job("mixed")["executionState"] == "succeeded"  # the id as written, and in upper case
    unset = [{"id": "O", "pathPrefix": "$BATCHAI_TEST_UNSET/out"}]
    bench.submit("unset", customToolkitSettings={"commandLine": "true"}, outputDirectories=unset)
    failed = bench.wait_job("unset")
    assert failed["executionState"] == "failed", failed
    assert "is not an absolute path" in failed["executionInfo"]["errors"][0]["message"]
    assert not Path("$BATCHAI_TEST_UNSET").exists() and not list(bench.server.home.rglob("$BATCHAI_TEST_UNSET"))


# The mount path is appended to a mount command; this one marks the directory it was given.
MARK = "sh -c 'echo mounted > \"$0\"/marker'"


def test_unmanaged_file_systems_run_their_mount_command_without_holding_anything_up(
    shared_server: Server, tmp_path: Path
) -> None:
    bench = make_bench(shared_server, "mounts.rg", tmp_path)
    slow = {"unmanagedFileSystems": [{"mountCommand": f"sleep 3; {MARK}", "relativeMountPath": "um"}]}
    bench.cluster("c", target=1, nodeSetup={"mountVolumes": slow})
    # While the node's mount command runs, the API (and its database) answer at once.
    wait_for(lambda: bench.cluster_state("c")["nodeStateCounts"]["preparingNodeCount"] == 1, message="preparing")
    response = shared_server.http.put(url(f"{bench.ws}/experiments/other"), timeout=2)
    assert response.status_code == 200
    bench.wait_nodes("c", idle=1)
    job_mount = {"unmanagedFileSystems": [{"mountCommand": MARK, "relativeMountPath": "jm"}]}
    check = "cat $AZ_BATCHAI_MOUNT_ROOT/um/marker $AZ_BATCHAI_JOB_MOUNT_ROOT/jm/marker"
    bench.submit("mounted", customToolkitSettings={"commandLine": check}, mountVolumes=job_mount)
    assert bench.wait_job("mounted")["executionState"] == "succeeded"
    assert (bench.stdouterr("mounted") / "stdout.txt").read_text() == "mounted\nmounted\n"
    # A mount command that fails fails the job, and says which command and why.
    failing = {"unmanagedFileSystems": [{"mountCommand": "echo no such server >&2; false", "relativeMountPath": "x"}]}
    bench.submit("unmounted", mountVolumes=failing)
    error = bench.wait_job("unmounted")["executionInfo"]["errors"][0]
    assert error["code"] == "MountFailed" and "no such server" in error["message"], error
    # On a cluster: its node is unusable, and the cluster says why.
    bench.cluster("bad", target=1, nodeSetup={"mountVolumes": failing})
    wait_for(lambda: bench.cluster_state("bad")["nodeStateCounts"]["unusableNodeCount"] == 1, message="unusable")
    errors = bench.cluster_state("bad")["errors"]
    assert "echo no such server" in json.dumps(errors) and "no such server" in json.dumps(errors), errors


def test_commands_on_nodes_are_bounded_and_leave_the_api_answering(bench: Bench) -> None:
    gate = bench.tmp / "commands-gate"
    exec_url = url(f"{bench.ws}/clusters/c/execOnNode")
    body = {"command": f"while [ ! -e {gate} ]; do sleep 0.05; done", "timeoutInSeconds": 60}
    results: list[int] = []

    def run() -> None:
        with httpx.Client(headers=bench.server.http.headers, timeout=90) as client:
            results.append(client.post(bench.server.endpoint + exec_url, json=body).status_code)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(list((bench.server.home / "nodes").rglob("commands/*"))) >= 16, message="16 commands")
        refused = bench.server.http.post(exec_url, json=body)
        assert arm_error(refused, 429)["code"] == "TooManyRequests"
        assert bench.server.http.get(url(f"{bench.ws}/clusters/c"), timeout=2).status_code == 200
    finally:
        gate.touch()
        for thread in threads:
            thread.join(timeout=60)
    assert results == [200] * 16


def test_a_new_file_server_starts_empty_whatever_was_deleted_before(bench: Bench) -> None:
    http = bench.server.http
    body = {
        "properties": {
            "vmSize": "STANDARD_D2",
            "dataDisks": {"diskCount": 1, "diskSizeInGB": 10, "storageAccountType": "Standard_LRS"},
            "sshConfiguration": {"userAccountSettings": {"adminUserName": "me", "adminUserPassword": "pw"}},
        }
    }

    def run_on(server: str, name: str, command: str) -> dict[str, Any]:
        fs_id = http.put(url(f"{bench.ws}/fileServers/{server}"), json=body).json()["id"]
        mounts = {"fileServers": [{"fileServer": {"id": fs_id}, "relativeMountPath": "nfs"}]}
        bench.submit(name, customToolkitSettings={"commandLine": command}, mountVolumes=mounts)
        return bench.wait_job(name)

    assert (
        run_on("fsa", "writes", "echo private > $AZ_BATCHAI_JOB_MOUNT_ROOT/nfs/secret.txt")["executionState"]
        == "succeeded"
    )
    assert http.delete(url(f"{bench.ws}/fileServers/fsa")).status_code == 200
    # The next file server may get the same row id: it must not find the deleted one's data.
    assert run_on("fsb", "reads", "ls -A $AZ_BATCHAI_JOB_MOUNT_ROOT/nfs")["executionState"] == "succeeded"
    assert (bench.stdouterr("reads") / "stdout.txt").read_text() == ""


def test_a_job_that_takes_a_deleted_job_s_id_starts_with_an_empty_temp_dir(bench: Bench) -> None:
    bench.submit(
        "leaves", customToolkitSettings={"commandLine": "echo $AZ_BATCHAI_JOB_TEMP; touch $AZ_BATCHAI_JOB_TEMP/left"}
    )
    assert bench.wait_job("leaves")["executionState"] == "succeeded"
    first = (bench.stdouterr("leaves") / "stdout.txt").read_text()
    assert bench.server.http.delete(url(bench.job_path("leaves"))).status_code == 200
    bench.submit(
        "after", customToolkitSettings={"commandLine": "echo $AZ_BATCHAI_JOB_TEMP; test ! -e $AZ_BATCHAI_JOB_TEMP/left"}
    )
    assert bench.wait_job("after")["executionState"] == "succeeded"
    assert (bench.stdouterr("after") / "stdout.txt").read_text() == first  # the same id, so the same directory


def test_request_bodies_and_environments_are_bounded(bench: Bench) -> None:
    many = [{"name": f"V{i}", "value": "x" * 100} for i in range(50_000)]  # about 6 MB of JSON
    response = put_job(bench, "huge", environmentVariables=many)
    assert arm_error(response, 413)["code"] == "RequestEntityTooLarge"
    wide = [{"name": "BIG", "value": "x" * 200_000}]  # more than one variable may hold
    refused(put_job(bench, "wide", environmentVariables=wide), "properties.environmentVariables[0].value", "too large")
    for name in ("huge", "wide"):
        assert bench.server.http.get(url(bench.job_path(name))).status_code == 404


def test_a_body_sent_in_chunks_is_bounded_too(bench: Bench) -> None:
    """Without a Content-Length the server cannot refuse a body up front: it reads it up to the limit."""

    def chunks(body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode()
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    job = {
        "cluster": {"id": f"{bench.ws}/clusters/c"},
        "nodeCount": 1,
        "stdOutErrPathPrefix": str(bench.tmp / "logs"),
        "customToolkitSettings": {"commandLine": "true"},
    }
    many = [{"name": f"V{i}", "value": "x" * 100} for i in range(50_000)]  # about 6 MB of JSON
    http = bench.server.http
    json_type = {"Content-Type": "application/json"}
    big = http.put(
        url(bench.job_path("chunked-huge")),
        content=chunks({"properties": {**job, "environmentVariables": many}}),
        headers=json_type,
    )
    assert big.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in big.request.headers
    assert arm_error(big, 413)["code"] == "RequestEntityTooLarge"
    assert http.get(url(bench.job_path("chunked-huge"))).status_code == 404
    # A body of the usual size, sent in chunks, is read whole.
    small = http.put(url(bench.job_path("chunked-small")), content=chunks({"properties": job}), headers=json_type)
    assert small.status_code in (200, 201), small.text
    assert http.get(url(bench.job_path("chunked-small"))).json()["properties"]["nodeCount"] == 1


def test_an_upload_cut_short_stores_nothing_and_is_no_server_error(bench: Bench) -> None:
    http = bench.server.http
    group = f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{bench.group}"
    account = http.put(url(f"{group}/providers/Microsoft.Storage/storageAccounts/cutshort", "2023-01-01"), json={})
    assert account.status_code in (200, 201)
    assert http.put("/storage/cutshort/shares/data").status_code in (200, 201)
    port = int(bench.server.endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(
            f"PUT /storage/cutshort/shares/data/files/part.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {bench.server.token}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"x" * 1000
        )
    log = bench.server.home / "test-server.log"
    wait_for(lambda: "disconnected before its request was read" in log.read_text(), message="the disconnect seen")
    assert "unexpected error" not in log.read_text()
    assert http.get("/storage/cutshort/shares/data/files").json()["value"] == []


def test_output_the_server_cannot_reach_is_refused_with_a_reason(bench: Bench) -> None:
    # An output directory on a mount batchai does not serve (here: nothing is mounted there).
    outputs = [{"id": "NFS", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/nfs"}]
    assert put_job(bench, "unserved", outputDirectories=outputs).status_code in (200, 201)
    listed = bench.server.http.post(url(bench.job_path("unserved") + "/listOutputFiles") + "&outputdirectoryid=NFS")
    error = arm_error(listed, 400)
    assert error["code"] == "OutputDirectoryNotServed" and error["target"] == "outputdirectoryid"
    assert "a mount path nothing is mounted at" in error["message"] and "share or container" in error["message"]
