"""The real ``batchai`` CLI as a subprocess: az batchai verbs and flags, output formats, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import BIN, SUB, Server, answer_through, free_port, url, wait_for

G = ("-g", "cli.rg")
GW = (*G, "-w", "ws")
GWE = (*GW, "-e", "exp")


def prepare(server: Server) -> None:
    server.ok("group", "create", "-n", "cli.rg", "-l", "eastus")
    server.ok("workspace", "create", *G, "-n", "ws")
    server.ok("experiment", "create", *GW, "-n", "exp")


def test_group_workspace_experiment_verbs(shared_server: Server) -> None:
    s = shared_server
    prepare(s)
    shown = s.ok("group", "show", "-n", "cli.rg")  # as az shows a group: its properties kept apart
    assert shown["location"] == "eastus" and shown["properties"] == {"provisioningState": "Succeeded"}
    assert "resourceGroup" not in shown
    groups = s.cli("group", "list", "-o", "table").stdout.splitlines()
    assert groups[0].split() == ["Name", "Location", "Status"] and ["cli.rg", "eastus", "Succeeded"] in [
        row.split() for row in groups[2:]
    ]
    assert s.ok("group", "exists", "-n", "cli.rg") is True
    assert s.ok("group", "exists", "-n", "nope.rg") is False
    assert "cli.rg" in s.ok("group", "list", "--query", "[].name")
    ws = s.ok("workspace", "show", *G, "-n", "ws")
    assert ws["resourceGroup"] == "cli.rg" and ws["location"] == "eastus"  # location from the group
    assert [w["name"] for w in s.ok("workspace", "list", *G)] == ["ws"]
    table = s.cli("workspace", "list", *G, "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Name", "Resource", "Group", "Location", "State"]
    assert table[2].split() == ["ws", "cli.rg", "eastus", "succeeded"]
    assert s.ok("experiment", "show", *GW, "-n", "exp")["name"] == "exp"
    assert s.ok("experiment", "list", *GW, "--query", "[].name") == ["exp"]
    s.ok("experiment", "create", *GW, "-n", "gone")
    assert s.ok("experiment", "delete", *GW, "-n", "gone", "-y") is None
    assert "gone" not in s.ok("experiment", "list", *GW, "--query", "[].name")


def test_lists_longer_than_a_page_are_followed_to_their_end(shared_server: Server) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "pages.rg", "-l", "eastus")
    s.ok("workspace", "create", "-g", "pages.rg", "-n", "ws")
    ws = f"/subscriptions/{SUB}/resourceGroups/pages.rg/providers/Microsoft.BatchAI/workspaces/ws"
    for i in range(1001):  # a page holds 1000
        assert s.http.put(url(f"{ws}/experiments/e{i:04d}")).status_code == 200
    names = s.ok("experiment", "list", "-g", "pages.rg", "-w", "ws", "--query", "[].name")
    assert sorted(names) == [f"e{i:04d}" for i in range(1001)]
    s.ok("group", "delete", "-n", "pages.rg", "-y")


def test_providers_are_registered_as_the_walkthroughs_ask(shared_server: Server) -> None:
    s = shared_server
    # The SDK walkthroughs' first step, 'az provider register -n Microsoft.BatchAI': silent, as az --wait.
    assert s.ok("provider", "register", "-n", "Microsoft.BatchAI") is None
    assert s.ok("provider", "register", "--namespace", "microsoft.storage", "--wait") is None
    assert s.ok("provider", "register", "-n", "Microsoft.Batch") is None  # the earlier api's walkthroughs
    shown = s.ok("provider", "show", "-n", "Microsoft.BatchAI")
    assert shown["id"].endswith("/providers/Microsoft.BatchAI") and shown["registrationState"] == "Registered"
    kinds = {t["resourceType"]: t["apiVersions"] for t in shown["resourceTypes"]}
    assert kinds["workspaces/experiments/jobs"] == ["2018-05-01"] and "2018-03-01" in kinds["jobs"]
    assert s.ok("provider", "list", "--query", "[].namespace") == [
        "Microsoft.BatchAI",
        "Microsoft.Storage",
        "Microsoft.Batch",
    ]
    table = s.cli("provider", "list", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Namespace", "RegistrationPolicy", "RegistrationState"]  # az's automatic table
    assert table[2].split() == ["Microsoft.BatchAI", "RegistrationRequired", "Registered"]
    assert "'Microsoft.Network' is invalid" in s.fails("provider", "register", "-n", "Microsoft.Network")
    assert "InvalidResourceNamespace" in s.fails("provider", "show", "-n", "Microsoft.Network")


def test_tags_are_space_separated_as_in_az(shared_server: Server) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "tags.rg", "-l", "eastus", "--tags", "team=ml", "stage=dev", "--tags", "flag")
    assert s.ok("group", "show", "-n", "tags.rg")["tags"] == {"team": "ml", "stage": "dev", "flag": ""}
    assert s.ok("group", "list", "--tag", "team=ml", "--query", "[].name") == ["tags.rg"]
    s.ok("workspace", "create", "-g", "tags.rg", "-n", "ws", "--tags", "a=1", "b=2")
    assert s.ok("workspace", "show", "-g", "tags.rg", "-n", "ws")["tags"] == {"a": "1", "b": "2"}
    assert s.ok("group", "update", "-n", "tags.rg", "--tags", "")["tags"] == {}  # az's way to clear them
    assert "invalid tag '=x'" in s.fails("group", "update", "-n", "tags.rg", "--tags", "ok=1", "=x")
    assert s.ok("group", "show", "-n", "tags.rg")["tags"] == {}  # the refused update changed nothing


def test_cluster_and_file_server_verbs(shared_server: Server, tmp_path: Path) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "cl.rg")
    s.ok("workspace", "create", "-g", "cl.rg", "-n", "ws", "-l", "eastus")
    c = ("-g", "cl.rg", "-w", "ws")
    cluster = s.ok(
        "cluster",
        "create",
        "-n",
        "nc6",
        *c,
        "-s",
        "Standard_NC6",
        "-i",
        "UbuntuDSVM",
        "-t",
        "1",
        "-u",
        "alice",
        "-p",
        "p4ssw0rd-secret",
    )
    # vmSize as Azure showed it (upper case); no nodes yet
    assert cluster["vmSize"] == "STANDARD_NC6" and cluster["allocationState"] == "resizing"
    assert cluster["virtualMachineConfiguration"]["imageReference"]["offer"] == "linux-data-science-vm-ubuntu"
    assert cluster["userAccountSettings"]["adminUserName"] == "alice"
    assert "p4ssw0rd-secret" not in json.dumps(cluster)
    assert cluster["scaleSettings"]["manual"]["targetNodeCount"] == 1
    # As az printed the SDK's Cluster: every attribute, null where the server sent nothing; Python's datetimes.
    shown = s.ok("cluster", "show", "-n", "nc6", *c)
    assert shown["errors"] is None and shown["subnet"] is None and shown["nodeSetup"] is None
    assert shown["scaleSettings"] == {
        "manual": {"targetNodeCount": 1, "nodeDeallocationOption": "requeue"},
        "autoScale": None,
    }
    assert shown["userAccountSettings"]["adminUserPassword"] is None  # (az showed no password either)
    assert shown["virtualMachineConfiguration"]["imageReference"]["virtualMachineImageId"] is None
    assert shown["creationTime"].endswith("+00:00") and "properties" not in shown
    resized = s.ok("cluster", "resize", "-n", "nc6", *c, "-t", "3")
    assert resized["scaleSettings"]["manual"]["targetNodeCount"] == 3
    auto = s.ok("cluster", "auto-scale", "-n", "nc6", *c, "--min", "0", "--max", "4")
    assert auto["scaleSettings"]["autoScale"] == {"minimumNodeCount": 0, "maximumNodeCount": 4, "initialNodeCount": 0}
    config = tmp_path / "cluster.json"
    config.write_text(
        json.dumps(
            {
                "properties": {
                    "vmSize": "STANDARD_D1",
                    "scaleSettings": {"autoScale": {"minimumNodeCount": 1, "maximumNodeCount": 2}},
                }
            }
        )
    )
    from_file = s.ok("cluster", "create", "-n", "fromfile", *c, "-f", str(config))
    assert from_file["scaleSettings"]["autoScale"]["maximumNodeCount"] == 2
    table = s.cli("cluster", "list", *c, "-o", "table")
    assert table.code == 0 and "VM Size" in table.stdout and "nc6" in table.stdout
    tsv = s.cli("cluster", "show", "-n", "nc6", *c, "--query", "[name, vmSize]", "-o", "tsv")
    assert tsv.stdout.splitlines() == ["nc6", "STANDARD_NC6"]  # a list's items are lines, as in az
    assert s.cli("cluster", "show", "-n", "nc6", *c, "-o", "yaml").stdout.startswith("allocationState:")
    fs = s.ok(
        "file-server",
        "create",
        "-n",
        "nfs",
        *c,
        "-s",
        "Standard_D2",
        "--disk-count",
        "2",
        "--disk-size",
        "10",
        "-u",
        "bob",
    )
    assert fs["dataDisks"]["diskCount"] == 2 and fs["dataDisks"]["diskSizeInGb"] == 10  # (diskSizeInGB on the wire)
    assert fs["subnet"] is None and fs["mountSettings"]["fileServerInternalIp"]
    assert [f["name"] for f in s.ok("file-server", "list", *c)] == ["nfs"]
    s.ok("file-server", "delete", "-n", "nfs", *c, "-y")
    s.ok("cluster", "delete", "-n", "fromfile", *c, "-y")
    assert s.ok("cluster", "list", *c, "--query", "[].name") == ["nc6"]


def test_setup_task_output_files_and_usages(shared_server: Server) -> None:
    """``az batchai cluster file list`` and ``az batchai list-usages``, with az's shapes and tables."""
    s = shared_server
    s.ok("group", "create", "-n", "setup.rg")
    s.ok("workspace", "create", "-g", "setup.rg", "-n", "ws", "-l", "eastus")
    s.ok("storage", "account", "create", "-n", "setuplogs", "-g", "setup.rg")
    s.ok("storage", "share", "create", "-n", "logs", "--account-name", "setuplogs")
    c = ("-g", "setup.rg", "-w", "ws")
    s.ok(
        "cluster", "create", "-n", "prepped", *c, "-s", "STANDARD_D1", "-t", "1",
        "--storage-account-name", "setuplogs", "--afs-name", "logs", "--afs-mount-path", "logs",
        "--setup-task", "echo prepared $AZ_BATCHAI_NODE_NAME",
        "--setup-task-output", "$AZ_BATCHAI_MOUNT_ROOT/logs/setup",
    )  # fmt: skip
    wait_for(
        lambda: s.ok("cluster", "show", "-n", "prepped", *c)["nodeStateCounts"]["idleNodeCount"] == 1,
        message="the node to be set up",
    )
    listing = ("cluster", "file", "list", *c, "-c", "prepped")
    assert s.ok(*listing) == [{"name": "node-0", "download_url": None, "is_directory": True, "size": None}]
    files = {f["name"]: f for f in s.ok(*listing, "-p", "node-0", "--expiry", "5")}
    assert sorted(files) == ["stderr.txt", "stdout.txt"] and files["stdout.txt"]["is_directory"] is False
    assert files["stdout.txt"]["size"] == len("prepared node-0\n")
    link = files["stdout.txt"]["download_url"]
    assert httpx.get(link).text == "prepared node-0\n"  # a signed link: no token needed
    assert httpx.get(link.replace("sig=", "sig=0")).status_code == 403
    assert "'..' is not allowed" in s.fails(*listing, "-p", "node-0/../..")  # nothing outside the output
    table = s.cli(*listing, "-o", "table").stdout
    assert table.split("\n")[0].split() == ["Name", "Is", "directory", "Size"] and "node-0" in table
    # Output that is not on storage the server can serve: a clear error, as az gives.
    s.ok(
        "cluster", "create", "-n", "unserved", *c, "-s", "STANDARD_D1", "-t", "0",
        "--setup-task", "true", "--setup-task-output", "$HOME/setup",
    )  # fmt: skip
    assert "SetupOutputNotServed" in s.fails("cluster", "file", "list", *c, "-c", "unserved")
    assert "was not found" in s.fails("cluster", "file", "list", *c, "-c", "missing")
    assert [sorted(n) for n in s.ok("cluster", "node", "list", *c, "-c", "prepped")] == [
        ["ipAddress", "nodeId", "port"]
    ]
    nodes = s.cli("cluster", "node", "list", *c, "-c", "prepped", "-o", "table").stdout
    assert nodes.split("\n")[0].split() == ["ID", "IP", "SSH", "Port"] and "node-0" in nodes
    usages = s.ok("list-usages", "-l", "eastus")
    assert usages[0]["name"]["value"] == "cores" and usages[0]["currentValue"] >= 1
    assert s.cli("list-usages", "-l", "eastus", "-o", "table").stdout.split("\n")[0].split() == [
        "Value", "Usage", "Limit"
    ]  # fmt: skip
    assert "Missing option '-l'" in s.fails("list-usages")
    s.ok("cluster", "delete", "-n", "unserved", *c, "-y")
    s.ok("cluster", "delete", "-n", "prepped", *c, "-y")


def idle_cluster(s: Server, group: str, name: str, nodes: int) -> tuple[str, ...]:
    """A group with workspace ``ws`` holding cluster ``name`` of ``nodes`` idle nodes; the group and workspace
    options for the cluster's commands."""
    s.ok("group", "create", "-n", group, "-l", "eastus")
    s.ok("workspace", "create", "-g", group, "-n", "ws")
    w = ("-g", group, "-w", "ws")
    s.ok("cluster", "create", "-n", name, *w, "-s", "STANDARD_D1", "-t", str(nodes))
    wait_for(lambda: s.ok("cluster", "show", "-n", name, *w, "--query", "nodeStateCounts.idleNodeCount") == nodes)
    return w


def test_a_node_command_left_by_a_killed_server_is_stopped_when_it_starts_again(server: Server, tmp_path: Path) -> None:
    """A command run on a node is waited for by its request; if the server dies meanwhile, nobody waits for
    it and its time limit is gone with the server: the next server stops it and removes its files."""
    s = server
    idle_cluster(s, "rg", "c", 1)
    marker = f"abandoned-{tmp_path.name}"
    ws = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws"
    body = {"command": f"exec -a {marker} sleep 300", "timeoutInSeconds": 600}
    client = s.http

    def ask() -> None:  # the request is cut when the server is killed
        with contextlib.suppress(httpx.HTTPError):
            client.post(url(f"{ws}/clusters/c/execOnNode"), json=body, timeout=120)

    def running() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]

    asking = threading.Thread(target=ask)
    asking.start()
    wait_for(running, message="the command to run")
    s.stop(kill=True)
    asking.join(30)
    assert running(), "the command outlives the server that ran it"
    s.start()
    wait_for(lambda: not running(), message="the abandoned command to be stopped")
    wait_for(lambda: not list((s.home / "nodes").glob("*/node-0/commands/*")), message="its files to go")


def test_node_exec_runs_a_command_on_a_node_and_gives_its_exit_code(shared_server: Server, tmp_path: Path) -> None:
    s = shared_server
    w = idle_cluster(s, "exec.rg", "two", 2)
    # az batchai cluster node exec --exec: the command's output and its exit code, on the first node by default.
    ran = s.cli(
        "cluster", "node", "exec", *w, "-c", "two", "--exec", "echo $AZ_BATCHAI_NODE_NAME; echo oops >&2; exit 3"
    )
    assert (ran.code, ran.stdout, ran.stderr) == (3, "node-0\n", "oops\n")
    ran = s.cli(
        "cluster", "node", "exec", *w, "-c", "two", "-n", "NODE-1", "--exec", 'echo "$AZ_BATCHAI_NODE_NAME $PWD"'
    )
    assert ran.code == 0 and ran.stdout.startswith("node-1 ") and ran.stdout.strip().endswith("node-1"), ran.stdout
    assert "has no node 'node-7'; its nodes: node-0, node-1" in s.fails(
        "cluster", "node", "exec", *w, "-c", "two", "-n", "node-7", "--exec", "true"
    )
    assert "give the command line to run on the node (--exec), ports to forward (--address), or both" in s.fails(
        "cluster", "node", "exec", *w, "-c", "two"
    )

    # az batchai job node exec: on a node the job ran on, in its working directory, where it left its files.
    s.ok("experiment", "create", *w, "-n", "e")
    job = tmp_path / "job.json"
    properties = {
        "nodeCount": 1,
        "stdOutErrPathPrefix": str(tmp_path / "logs"),
        "customToolkitSettings": {"commandLine": "echo model > model.txt"},
    }
    job.write_text(json.dumps({"properties": properties}))
    je = (*w, "-e", "e")
    s.ok("job", "create", *je, "-n", "j", "-c", "two", "-f", str(job))
    wait_for(lambda: s.ok("job", "show", *je, "-n", "j", "--query", "executionState") == "succeeded")
    ran = s.cli("job", "node", "exec", *je, "-j", "j", "--exec", "cat model.txt; basename $PWD")
    assert (ran.code, ran.stdout) == (0, "model\nwd\n"), ran.stderr

    # A command that outlives its time limit is stopped, and says so; nothing of it is left running.
    ws = f"/subscriptions/{SUB}/resourceGroups/exec.rg/providers/Microsoft.BatchAI/workspaces/ws"
    marker = f"exec-marker-{tmp_path.name}"
    body = {"command": f"exec -a {marker} sleep 60", "timeoutInSeconds": 1}
    answer = s.http.post(url(f"{ws}/clusters/two/execOnNode"), json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["timedOut"], answer.json()["exitCode"], answer.json()["nodeId"]) == (True, None, "node-0")
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    refused = s.http.post(url(f"{ws}/clusters/two/execOnNode"), json={"command": "", "timeoutInSeconds": 0})
    assert refused.status_code == 400 and refused.json()["error"]["code"]
    s.ok("group", "delete", "-n", "exec.rg", "-y")


def seed_job_output() -> dict[str, Any]:
    """The seed quickstart's sample output of ``az batchai job create`` (June 2018)."""
    seeds = Path(__file__).resolve().parents[3] / "shared" / "seeds"
    text = next(seeds.glob("000_*.txt")).read_text()
    return dict(json.loads(next(b for b in re.findall(r"```\w*\n(\{.*?)```", text, re.S) if "caffe2Settings" in b)))


def test_job_verbs_with_the_seed_job_json(shared_server: Server, tmp_path: Path, seed_job_json: str) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "job.rg", "-l", "eastus")
    s.ok("workspace", "create", "-g", "job.rg", "-n", "quickstart")
    q = ("-g", "job.rg", "-w", "quickstart")
    home = {"HOME": str(tmp_path)}  # --generate-ssh-keys writes ~/.ssh/id_rsa: not the user's
    nc6 = ("-n", "nc6", *q, "-s", "Standard_NC6", "-i", "UbuntuDSVM", "-t", "1", "--generate-ssh-keys")
    s.ok("cluster", "create", *nc6, env=home)
    s.ok("storage", "account", "create", "-n", "jobstore1", "--sku", "Standard_LRS", "-g", "job.rg")
    account = ("--account-name", "jobstore1")
    s.ok("storage", "share", "create", "-n", "scripts", *account)
    s.ok("storage", "share", "create", "-n", "logs", *account)
    s.ok("storage", "container", "create", "-n", "data", *account)
    s.ok("experiment", "create", *q, "-n", "quickstart")
    qe = (*q, "-e", "quickstart")
    # The cluster's one node is busy with another job, so the seed job stays queued.
    blocker = tmp_path / "blocker.json"
    blocker.write_text(
        json.dumps(
            {
                "properties": {
                    "nodeCount": 1,
                    "stdOutErrPathPrefix": str(tmp_path / "logs"),
                    "customToolkitSettings": {"commandLine": "sleep 120"},
                }
            }
        )
    )
    s.ok("job", "create", "-n", "blocker", "-c", "nc6", *qe, "-f", str(blocker))
    wait_for(
        lambda: s.ok("job", "show", "-n", "blocker", *qe, "--query", "executionState") == "running",
        message="the blocking job to run",
    )
    job_file = tmp_path / "job.json"
    job_file.write_text(seed_job_json.replace("<YOUR_STORAGE_ACCOUNT>", "jobstore1"))
    job = s.ok(
        "job",
        "create",
        "-n",
        "cntk_python_1",
        "-c",
        "nc6",
        *qe,
        "-f",
        str(job_file),
        "--storage-account-name",
        "jobstore1",
    )
    assert job["executionState"] == "queued" and job["toolType"] == "cntk"
    assert job["cntkSettings"]["languageType"] == "Python" and job["cntkSettings"]["processCount"] == 1
    assert job["mountVolumes"]["azureFileShares"][0]["accountName"] == "jobstore1"
    shown = s.ok("job", "show", "-n", "cntk_python_1", *qe)
    assert shown["executionState"] == "queued" and shown["outputDirectories"][0]["id"] == "MODEL"
    # As az printed the SDK's Job (the seed's sample output of this job): every attribute, null where unset,
    # datetimes and durations as Python writes them.
    sample = seed_job_output()
    assert sorted(shown) == sorted(sample) and shown["caffe2Settings"] is None and shown["executionInfo"] is None
    assert shown["constraints"] == {"maxWallClockTime": "7 days, 0:00:00"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00", shown["creationTime"])
    for key in ("cntkSettings", "outputDirectories", "schedulingPriority", "toolType", "stdOutErrPathPrefix"):
        assert shown[key] == sample[key], key
    for kind in ("azureFileShares", "azureBlobFileSystems"):
        assert sorted(shown["mountVolumes"][kind][0]) == sorted(sample["mountVolumes"][kind][0])
    assert shown["mountVolumes"]["fileServers"] is None and shown["mountVolumes"]["unmanagedFileSystems"] is None
    tsv = s.cli("job", "show", "-n", "cntk_python_1", *qe, "--query", "[name, caffe2Settings, nodeCount]", "-o", "tsv")
    assert tsv.stdout == "cntk_python_1\nNone\n1\n"  # (knack writes str(None) for a null)
    segment = s.cli("job", "show", "-n", "cntk_python_1", *qe, "--query", "jobOutputDirectoryPathSegment")
    assert segment.code == 0
    assert json.loads(segment.stdout).startswith("00000000-0000-0000-0000-000000000000/job.rg/workspaces/quickstart/")
    assert s.ok("job", "list", *qe, "--query", "[].name") == ["blocker", "cntk_python_1"]
    header, rule, *rows = s.cli("job", "list", *qe, "-o", "table").stdout.splitlines()  # az batchai's columns
    assert header.split() == [
        "Name",
        "Cluster",
        "Cluster",
        "RG",
        "Cluster",
        "Workspace",
        "Tool",
        "Nodes",
        "State",
        "Exit",
        "code",
    ]
    assert set(rule) == {"-", " "} and any("queued" in row for row in rows)
    assert s.ok("job", "file", "list", "-j", "cntk_python_1", *qe, "-d", "MODEL") == []
    s.ok("job", "terminate", "-n", "cntk_python_1", *qe, "-y")
    assert s.ok("job", "show", "-n", "cntk_python_1", *qe, "--query", "executionState") == "failed"
    s.ok("job", "delete", "-n", "cntk_python_1", *qe, "-y")
    s.ok("job", "terminate", "-n", "blocker", *qe, "-y")
    info = s.ok("job", "show", "-n", "blocker", *qe, "--query", "executionInfo")
    assert sorted(info) == sorted(sample["executionInfo"]) and info["errors"][0]["code"] == "JobTerminated"
    assert info["startTime"].endswith("+00:00") and info["endTime"].endswith("+00:00")
    s.ok("job", "delete", "-n", "blocker", *qe, "-y")
    assert s.ok("job", "list", *qe) == []
    s.ok("group", "delete", "-n", "job.rg", "-y")
    assert s.ok("group", "exists", "-n", "job.rg") is False


def test_bad_input_prints_one_line_and_creates_nothing(shared_server: Server, tmp_path: Path) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "bad.rg")
    s.ok("workspace", "create", "-g", "bad.rg", "-n", "ws")
    s.ok("experiment", "create", "-g", "bad.rg", "-w", "ws", "-n", "e")
    s.ok("cluster", "create", "-n", "c", "-g", "bad.rg", "-w", "ws", "-s", "A", "-t", "1")
    e = ("-g", "bad.rg", "-w", "ws", "-e", "e")
    assert "InvalidResourceName" in s.fails("workspace", "create", "-g", "bad.rg", "-n", "bad name")
    assert "ResourceGroupNotFound" in s.fails("workspace", "create", "-g", "missing.rg", "-n", "ws")
    malformed = tmp_path / "bad.json"
    malformed.write_text("{ nope")
    assert "not valid JSON" in s.fails("job", "create", "-n", "j", *e, "-c", "c", "-f", str(malformed))
    two = tmp_path / "two.json"
    two.write_text(
        json.dumps(
            {
                "properties": {
                    "nodeCount": 1,
                    "stdOutErrPathPrefix": "/tmp",
                    "customToolkitSettings": {"commandLine": "true"},
                    "pyTorchSettings": {"pythonScriptFilePath": "a.py"},
                }
            }
        )
    )
    assert "InvalidToolkit" in s.fails("job", "create", "-n", "j", *e, "-c", "c", "-f", str(two))
    ok_file = tmp_path / "ok.json"
    ok_file.write_text(
        json.dumps(
            {
                "properties": {
                    "nodeCount": 1,
                    "stdOutErrPathPrefix": "/tmp",
                    "customToolkitSettings": {"commandLine": "true"},
                }
            }
        )
    )
    assert "ClusterNotFound" in s.fails("job", "create", "-n", "j", *e, "-c", "nosuch", "-f", str(ok_file))
    too_many = tmp_path / "many.json"
    too_many.write_text(ok_file.read_text().replace('"nodeCount": 1', '"nodeCount": 5'))
    assert "InvalidNodeCount" in s.fails("job", "create", "-n", "j", *e, "-c", "c", "-f", str(too_many))
    assert "cannot read" in s.fails("job", "create", "-n", "j", *e, "-c", "c", "-f", str(tmp_path / "none.json"))
    assert s.fails("job", "create", "-n", "j", *e, "-f", str(ok_file)).startswith("ERROR:")  # no cluster
    assert "No such option" in s.fails("job", "list", *e, "--bogus")
    assert "Missing option" in s.fails("job", "show", *e)
    assert "InvalidScaleSettings" in s.fails(
        "cluster", "auto-scale", "-n", "c", "-g", "bad.rg", "-w", "ws", "--min", "3", "--max", "1"
    )
    assert "invalid JMESPath" in s.fails("job", "list", *e, "--query", "[[")
    assert s.ok("job", "list", *e) == []
    no_server = s.cli("group", "list", env={"BATCHAI_HOME": str(tmp_path / "empty")})
    assert no_server.code != 0 and no_server.stderr.startswith("ERROR: no batchai server is configured")
    wrong = s.cli("group", "list", env={"BATCHAI_ENDPOINT": s.endpoint, "BATCHAI_TOKEN": "wrong"})
    assert wrong.code != 0 and "InvalidAuthenticationToken" in wrong.stderr


def test_configure_and_environment_find_the_server(shared_server: Server, tmp_path: Path) -> None:
    s = shared_server
    other_home = tmp_path / "client-home"
    env = {"BATCHAI_HOME": str(other_home)}
    assert s.cli("group", "list", env=env).code != 0
    shown = s.ok("configure", "--endpoint", s.endpoint, "--token", s.token, env=env)
    assert shown["token"] == "***" and shown["endpoint"] == s.endpoint
    assert (other_home / "config.json").stat().st_mode & 0o777 == 0o600
    assert isinstance(s.ok("group", "list", env=env), list)
    # What cannot work is refused before it is stored.
    assert "not a valid URL" in s.fails("configure", "--endpoint", "http://127.0.0.1:1:2", env=env)
    assert "invalid subscription id" in s.fails("configure", "--subscription", "../x", env=env)
    assert s.ok("configure", env=env)["endpoint"] == s.endpoint
    with_password = s.endpoint.replace("://", "://me:hunter2@")
    assert s.ok("configure", "--endpoint", with_password, env=env)["endpoint"] == with_password.replace(
        "hunter2", "***"
    )
    assert (
        "hunter2" not in s.cli("group", "list", env={**env, "BATCHAI_ENDPOINT": "http://me:hunter2@127.0.0.1:9"}).stderr
    )
    s.ok("configure", "--endpoint", s.endpoint, env=env)
    via_env = s.cli(
        "group",
        "list",
        env={"BATCHAI_HOME": str(tmp_path / "x"), "BATCHAI_ENDPOINT": s.endpoint, "BATCHAI_TOKEN": s.token},
    )
    assert via_env.code == 0


def through(port: int, data: bytes) -> bytes:
    """What a local connection to ``port`` gets back for ``data`` (empty if it is closed on us)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(data)
        return connection.recv(1024)


def test_node_exec_address_forwards_local_ports_to_the_node(
    shared_server: Server, tmp_path: Path, service_port: int
) -> None:
    """az batchai cluster/job node exec --address (-L): ssh-style local forwarding, here through the server."""
    s = shared_server
    w = idle_cluster(s, "fwd.rg", "c", 1)
    nothing_there = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
    forwarding = subprocess.Popen(
        [
            *(str(BIN / "batchai"), "cluster", "node", "exec", *w, "-c", "c", "-L", f"0:localhost:{service_port}"),
            *("--address", f"127.0.0.1:0:127.0.0.1:{nothing_there}"),  # ssh's [bind_address:]port:host:hostport
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**environ, "BATCHAI_HOME": str(s.home)},
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_stderr() -> None:
        for line in forwarding.stderr or []:
            lines.put(line)

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        said = [lines.get(timeout=60) for _ in range(3)]
        ports = [int(m[1]) for m in (re.match(r"Forwarding 127.0.0.1:(\d+) -> ", line) for line in said) if m]
        assert len(ports) == 2 and said[2] == "Press Ctrl+C to stop forwarding.\n", said
        assert said[0].endswith(f"-> localhost:{service_port} on node-0\n"), said
        # Connections at once, each with its own relay.
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=30) as first:
            first.sendall(b"first")
            assert through(ports[0], b"second") == b"SECOND"
            assert first.recv(1024) == b"FIRST"
        # Nothing listens on the other port of the node: that connection is closed and the reason printed.
        assert through(ports[1], b"hello") == b""
        refused = lines.get(timeout=30)
        assert f"(PortNotReachable) Nothing answered at 127.0.0.1:{nothing_there} on node-0" in refused, refused
        assert through(ports[0], b"still there") == b"STILL THERE"
        # A client that ends its side first (a half-close, as `nc -N` does) still gets the whole answer.
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", ports[0]), timeout=30) as half:
                half.sendall(b"the end")
                half.shutdown(socket.SHUT_WR)
                assert b"".join(iter(lambda: half.recv(1024), b"")) == b"THE END"
        forwarding.send_signal(signal.SIGINT)  # Ctrl+C ends it, as it ended az's
        assert forwarding.wait(30) == 0
    finally:
        if forwarding.poll() is None:
            forwarding.kill()
            forwarding.wait()

    # With --exec, the ports are forwarded while the command runs (here it uses them itself: a local node is
    # this host), and the command's exit code is this one's.
    local = free_port()
    ran = s.cli(
        *("cluster", "node", "exec", *w, "-c", "c", "-L", f"{local}:localhost:{service_port}"),
        *("--exec", answer_through(local, "via exec"), "-k", "~/.ssh/id_rsa"),  # az's SSH flags: not needed
    )
    assert (ran.code, ran.stdout) == (0, "VIA EXEC\n"), ran.stderr

    # A job's node: the same through the job.
    s.ok("experiment", "create", *w, "-n", "e")
    job = tmp_path / "job.json"
    properties = {"nodeCount": 1, "stdOutErrPathPrefix": str(tmp_path / "logs")}
    job.write_text(json.dumps({"properties": {**properties, "customToolkitSettings": {"commandLine": "true"}}}))
    je = (*w, "-e", "e")
    s.ok("job", "create", *je, "-n", "j", "-c", "c", "-f", str(job))
    wait_for(lambda: s.ok("job", "show", *je, "-n", "j", "--query", "executionState") == "succeeded")
    local = free_port()
    ran = s.cli(
        *("job", "node", "exec", *je, "-j", "j", "-L", f"{local}:localhost:{service_port}"),
        *("--exec", answer_through(local, "via job")),
    )
    assert (ran.code, ran.stdout) == (0, "VIA JOB\n"), ran.stderr

    # Bad input: one line, nothing listening afterwards.
    assert "is not [bind_address:]port:host:hostport" in s.fails("cluster", "node", "exec", *w, "-c", "c", "-L", "6006")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert "cannot listen for port forwarding" in s.fails(
            "cluster", "node", "exec", *w, "-c", "c", "-L", f"{busy}:localhost:{service_port}", "--exec", "true"
        )
    assert "has no node 'node-5'; its nodes: node-0" in s.fails(
        "cluster", "node", "exec", *w, "-c", "c", "-n", "node-5", "-L", f"0:localhost:{service_port}"
    )

    # The server's side: the websocket needs the token, and reaches only the node's own ports.
    ws = f"/subscriptions/{SUB}/resourceGroups/fwd.rg/providers/Microsoft.BatchAI/workspaces/ws"
    address = f"{s.endpoint.replace('http', 'ws', 1)}{ws}/clusters/c/forwardPort?api-version=2018-05-01"
    with pytest.raises(InvalidStatus) as refused_call:
        connect(f"{address}&port={service_port}")
    assert refused_call.value.response.status_code == 401
    token = {"Authorization": f"Bearer {s.token}"}
    with pytest.raises(InvalidStatus) as refused_call:
        connect(f"{address}&port={service_port}&host=example.com", additional_headers=token)
    error = json.loads(refused_call.value.response.body)["error"]
    assert (refused_call.value.response.status_code, error["target"]) == (400, "host"), error
    with connect(f"{address}&port={service_port}", additional_headers=token) as relay:
        relay.send(b"raw")
        assert relay.recv(timeout=30) == b"RAW"
    # ARM paths in any case, as for every other request; a port is ASCII digits.
    with connect(
        f"{address.replace('resourceGroups', 'resourcegroups')}&port={service_port}", additional_headers=token
    ) as relay:
        relay.send(b"low")
        assert relay.recv(timeout=30) == b"LOW"
    with pytest.raises(InvalidStatus) as refused_call:
        connect(f"{address}&port=%C2%B2", additional_headers=token)
    assert refused_call.value.response.status_code == 400
    s.ok("group", "delete", "-n", "fwd.rg", "-y")


def test_az_cluster_create_forms_ids_and_global_flags(shared_server: Server, tmp_path: Path) -> None:
    """az's readings of -t/--min/--max, images and keys; --use-auto-storage; --ids, --subscription, --verbose,
    --debug and --only-show-errors."""
    s = shared_server
    s.ok("group", "create", "-n", "az.rg", "-l", "westus")
    s.ok("workspace", "create", "-g", "az.rg", "-n", "ws")
    w = ("-g", "az.rg", "-w", "ws", "-s", "STANDARD_D1")
    auto = s.ok("cluster", "create", "-n", "auto", *w, "--min", "0", "-t", "1", "--max", "3")
    assert auto["virtualMachineConfiguration"]["imageReference"] == {  # no -i: Batch AI's default image
        "publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS", "version": "latest",
        "virtualMachineImageId": None,
    }  # fmt: skip
    assert auto["scaleSettings"] == {
        "autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 3, "initialNodeCount": 1},
        "manual": None,
    }
    fixed = s.ok("cluster", "create", "-n", "fixed", *w, "--min", "0", "--max", "0")  # min = max: a fixed size
    assert fixed["scaleSettings"]["manual"]["targetNodeCount"] == 0
    assert "already exists" in s.fails("cluster", "create", "-n", "fixed", *w, "-t", "0")
    assert "give the cluster's size" in s.fails("cluster", "create", "-n", "sizeless", *w)
    assert "--max must be greater" in s.fails("cluster", "create", "-n", "x", *w, "--min", "2", "--max", "1")
    assert "incorrect ssh public key" in s.fails("cluster", "create", "-n", "x", *w, "-t", "0", "-k", "ssh-rsa AAAA")
    assert "publisher:offer:sku:version" in s.fails("cluster", "create", "-n", "x", *w, "-t", "0", "-i", "a:b:c")
    image = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i"
    assert "needs -i/--image" in s.fails("cluster", "create", "-n", "x", *w, "-t", "0", "--custom-image", image)
    made = s.ok("cluster", "create", "-n", "img", *w, "-t", "0", "-i", "p:o:sku:", "--custom-image", image)
    assert made["virtualMachineConfiguration"]["imageReference"] == {
        "publisher": "p", "offer": "o", "sku": "sku", "version": None, "virtualMachineImageId": image
    }  # fmt: skip
    assert "x" not in s.ok("cluster", "list", "-g", "az.rg", "-w", "ws", "--query", "[].name")  # nothing half-made
    # --use-auto-storage: an account of the auto-storage group, its share and container on every node.
    setup = "echo from-the-node > $AZ_BATCHAI_MOUNT_ROOT/autoafs/hello.txt && ls $AZ_BATCHAI_MOUNT_ROOT/autobfs"
    first = s.cli(
        "cluster", "create", "-n", "withauto", *w, "-t", "1", "--use-auto-storage", "--setup-task", setup,
        "--setup-task-output", "$AZ_BATCHAI_MOUNT_ROOT/autoafs/setup",
    )  # fmt: skip
    assert first.code == 0 and "Created auto storage account" in first.stderr
    mounts = first.json()["nodeSetup"]["mountVolumes"]
    account = mounts["azureFileShares"][0]["accountName"]
    assert re.fullmatch("bai[a-z]{12}", account) and mounts["azureFileShares"][0]["relativeMountPath"] == "autoafs"
    assert mounts["azureBlobFileSystems"][0] == {
        "accountName": account, "containerName": "batchaicontainer", "relativeMountPath": "autobfs",
        "credentials": None, "mountOptions": None,
    }  # fmt: skip
    wait_for(lambda: s.ok("cluster", "show", "-n", "withauto", *w[:4], "--query", "nodeStateCounts.idleNodeCount") == 1)
    hello = tmp_path / "hello.txt"
    s.ok("storage", "file", "download", "--account-name", account, "-s", "batchaishare", "-p", "hello.txt",
         "--dest", str(hello))  # fmt: skip
    assert hello.read_text() == "from-the-node\n"
    quiet = s.cli("cluster", "create", "-n", "again", *w, "-t", "0", "--use-auto-storage", "--only-show-errors")
    assert quiet.code == 0 and quiet.stderr == ""  # the same account again, and no warnings
    assert quiet.json()["nodeSetup"]["mountVolumes"]["azureFileShares"][0]["accountName"] == account
    assert s.ok("storage", "account", "list", "-g", "batchaiautostorage", "--query", "[].name") == [account]
    # --ids in place of the names (one id: the resource; several: a list), and --subscription.
    ids = [f"/subscriptions/{SUB}/resourceGroups/az.rg/providers/Microsoft.BatchAI/workspaces/ws/clusters/{n}"
           for n in ("auto", "fixed")]  # fmt: skip
    assert s.ok("cluster", "show", "--ids", ids[0], "--query", "name") == "auto"
    assert s.ok("cluster", "show", "--ids", *ids, "--query", "[].name") == ["auto", "fixed"]
    assert s.ok("group", "show", "--ids", f"/subscriptions/{SUB}/resourceGroups/az.rg", "--query", "name") == "az.rg"
    assert "invalid resource id" in s.fails("cluster", "show", "--ids", "nonsense")
    assert "Missing option" in s.fails("cluster", "show", "-g", "az.rg", "-w", "ws")
    other = "11111111-1111-1111-1111-111111111111"
    assert "was not found" in s.fails("group", "show", "-n", "az.rg", "--subscription", other)
    # --verbose shows the requests, --debug also the answers; the token never.
    verbose = s.cli("cluster", "show", "-n", "auto", *w[:4], "--verbose", "-o", "none")
    assert verbose.code == 0 and "HTTP Request: GET" in verbose.stderr
    debug = s.cli("cluster", "show", "-n", "auto", *w[:4], "--debug", "-o", "none")
    assert debug.code == 0 and "<redacted>" in debug.stderr and '"provisioningState"' in debug.stderr
    assert s.token not in debug.stderr + verbose.stderr
    s.ok("file-server", "create", "-n", "nfs", "-g", "az.rg", "-w", "ws", "-s", "Standard_D2", "--disk-count", "1",
         "--disk-size", "10", "-u", "me", "-p", "pw", "--no-wait")  # fmt: skip
    for name in ("auto", "fixed", "img", "withauto", "again"):
        s.ok("cluster", "delete", "-n", name, *w[:4], "-y")


def test_a_sample_placeholder_left_in_a_job_file_is_named(shared_server: Server, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    share = {"azureFileUrl": "https://<YOUR_STORAGE_ACCOUNT>.file.core.windows.net/logs", "relativeMountPath": "l"}
    job.write_text(json.dumps({"properties": {"mountVolumes": {"azureFileShares": [share]}}}))
    args = ("job", "create", "-n", "j", "-g", "g", "-w", "w", "-e", "e", "-c", "c", "-f", str(job))
    error = shared_server.fails(*args, "--storage-account-name", "acct")
    assert "still holds the placeholder <YOUR_STORAGE_ACCOUNT>" in error
    stopped = shared_server.cli("group", "list", env={"BATCHAI_ENDPOINT": "http://127.0.0.1:9", "BATCHAI_TOKEN": "t"})
    assert stopped.code == 1 and "Is it running?" in stopped.stderr and "batchai server start" in stopped.stderr


def test_a_name_cannot_reach_another_resource(shared_server: Server) -> None:
    s = shared_server
    s.ok("group", "create", "-n", "esc.rg", "-l", "eastus")
    s.ok("workspace", "create", "-g", "esc.rg", "-n", "ws")
    s.ok("experiment", "create", "-g", "esc.rg", "-w", "ws", "-n", "kept")
    s.ok("cluster", "create", "-g", "esc.rg", "-w", "ws", "-n", "c4", "-s", "D1", "-t", "0")
    w = ("-g", "esc.rg", "-w", "ws")
    s.fails("job", "delete", *w, "-e", "kept", "-n", "../../kept?", "-y")  # was: DELETE .../experiments/kept
    s.fails("cluster", "delete", *w, "-n", "c4#anything", "-y")  # was: DELETE .../clusters/c4
    s.fails(
        "cluster", "show", "-g", "esc.rg/providers/Microsoft.BatchAI/workspaces/ws/clusters/c4#", "-w", "x", "-n", "y"
    )
    assert s.ok("experiment", "show", *w, "-n", "kept", "--query", "name") == "kept"
    assert s.ok("cluster", "show", *w, "-n", "c4", "--query", "name") == "c4"
