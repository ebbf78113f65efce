"""The CLI's JSON of Batch AI resources is az's: the SDK's models printed by knack's ``todict``."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from batchai.cli.az_shape import duration, iso_datetime
from batchai.cli.output import flatten, render_tsv, with_resource_groups
from batchai.cli.sdk_models import MODELS

ROOT = Path(__file__).resolve().parents[2]
WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws"
T = "2026-11-23T03:27:20.051190Z"

JOB: dict[str, Any] = {
    "id": f"{WS}/experiments/e/jobs/j",
    "name": "j",
    "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
    "properties": {
        "schedulingPriority": "normal",
        "cluster": {"id": f"{WS}/clusters/c"},
        "nodeCount": 2,
        "mountVolumes": {
            "azureFileShares": [{"azureFileUrl": "https://a.file.core.windows.net/logs", "relativeMountPath": "logs"}]
        },
        "containerSettings": {"imageSourceRegistry": {"image": "tensorflow/tensorflow:1.8.0-gpu"}},
        "toolType": "tensorflow",
        "tensorFlowSettings": {"pythonScriptFilePath": "train.py", "workerCount": 2, "parameterServerCount": 1},
        "stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/logs",
        "outputDirectories": [{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/logs"}],
        "environmentVariables": [{"name": "A", "value": "1"}],
        "constraints": {"maxWallClockTime": "P7D"},
        "creationTime": T,
        "provisioningState": "succeeded",
        "provisioningStateTransitionTime": "2026-11-23T03:27:21Z",
        "executionState": "failed",
        "executionStateTransitionTime": "2026-11-23T03:27:22.1234567Z",
        "executionInfo": {
            "startTime": "2026-11-23T03:27:21.5Z",
            "endTime": "2026-11-23T04:27:21.000000Z",
            "exitCode": 3,
            "errors": [{"code": "JobFailed", "message": "m", "details": [{"name": "n", "value": "v"}]}],
        },
    },
}
CLUSTER: dict[str, Any] = {
    "id": f"{WS}/clusters/c",
    "name": "c",
    "type": "Microsoft.BatchAI/workspaces/clusters",
    "properties": {
        "vmSize": "STANDARD_NC6",
        "vmPriority": "dedicated",
        "scaleSettings": {"manual": {"targetNodeCount": 1, "nodeDeallocationOption": "requeue"}},
        "virtualMachineConfiguration": {"imageReference": {"publisher": "p", "offer": "o", "sku": "s"}},
        "userAccountSettings": {"adminUserName": "alice", "adminUserSshPublicKey": "ssh-rsa AAA"},
        "nodeSetup": {"setupTask": {"commandLine": "true", "stdOutErrPathPrefix": "/x", "stdOutErrPathSuffix": "s"}},
        "creationTime": T,
        "provisioningState": "succeeded",
        "provisioningStateTransitionTime": T,
        "allocationState": "steady",
        "allocationStateTransitionTime": T,
        "currentNodeCount": 1,
        "nodeStateCounts": {"idleNodeCount": 1, "runningNodeCount": 0},
    },
}
FILE_SERVER: dict[str, Any] = {
    "id": f"{WS}/fileServers/nfs",
    "name": "nfs",
    "type": "Microsoft.BatchAI/workspaces/fileServers",
    "properties": {
        "vmSize": "STANDARD_D2",
        "dataDisks": {"diskSizeInGB": 10, "diskCount": 2, "storageAccountType": "Standard_LRS"},
        "mountSettings": {"mountPoint": "/mnt/data", "fileServerPublicIP": "127.0.0.1"},
        "creationTime": T,
    },
}
WORKSPACE = {
    "id": WS,
    "name": "ws",
    "type": "Microsoft.BatchAI/workspaces",
    "location": "eastus",
    "tags": {"a": "1"},
    "properties": {"creationTime": T, "provisioningState": "succeeded"},
}
EXPERIMENT = {"id": f"{WS}/experiments/e", "name": "e", "type": "Microsoft.BatchAI/workspaces/experiments"}
FILES = [
    {"name": "stdout.txt", "fileType": "file", "downloadUrl": "http://x", "properties": {"contentLength": 3}},
    {"name": "sub", "fileType": "directory", "properties": {"lastModified": T}},
]
USAGES = [{"unit": "Count", "currentValue": 2, "limit": 8, "name": {"value": "cores", "localizedValue": "Cores"}}]
NODES = [{"nodeId": "node-0", "ipAddress": "127.0.0.1", "port": 22}]


def test_datetimes_and_durations_are_written_as_python_writes_them() -> None:
    assert iso_datetime(T) == "2026-11-23T03:27:20.051190+00:00"
    assert iso_datetime("2018-06-15T06:27:49.692Z") == "2018-06-15T06:27:49.692000+00:00"
    assert iso_datetime("2018-06-15T06:27:49.000Z") == "2018-06-15T06:27:49+00:00"  # microsecond 0: no fraction
    assert iso_datetime("2018-06-15T06:27:49.12345678+02:00") == "2018-06-15T06:27:49.123456+02:00"
    assert iso_datetime("2018-06-15T06:27:49") == "2018-06-15T06:27:49"
    assert iso_datetime("yesterday") == "yesterday" and iso_datetime(3) == 3
    assert duration("P7D") == "7 days, 0:00:00" and duration("PT1H") == "1:00:00"
    assert duration("P1DT2H30M") == "1 day, 2:30:00" and duration("PT0.5S") == "0:00:00.500000"
    assert duration("P2W") == "14 days, 0:00:00"
    assert duration("P1M") == "P1M" and duration("P") == "P" and duration("7.00:00:00") == "7.00:00:00"


def test_a_job_has_every_attribute_of_the_sdk_s_job() -> None:
    job = flatten(JOB)
    assert list(job)[:-1] == [key for key, _, _ in MODELS["Job"]] and list(job)[-1] == "resourceGroup"
    assert job["caffe2Settings"] is None and job["pyTorchSettings"] is None and job["secrets"] is None
    assert job["constraints"] == {"maxWallClockTime": "7 days, 0:00:00"}
    assert job["creationTime"] == "2026-11-23T03:27:20.051190+00:00"
    assert job["executionStateTransitionTime"] == "2026-11-23T03:27:22.123456+00:00"
    assert job["executionInfo"]["startTime"] == "2026-11-23T03:27:21.500000+00:00"
    assert job["executionInfo"]["endTime"] == "2026-11-23T04:27:21+00:00"
    assert job["executionInfo"]["errors"] == [
        {"code": "JobFailed", "message": "m", "details": [{"name": "n", "value": "v"}]}
    ]
    assert job["cluster"] == {"id": f"{WS}/clusters/c", "resourceGroup": "rg"}
    assert job["containerSettings"] == {
        "imageSourceRegistry": {"serverUrl": None, "image": "tensorflow/tensorflow:1.8.0-gpu", "credentials": None},
        "shmSize": None,
    }
    assert job["mountVolumes"]["azureFileShares"][0]["credentials"] is None
    assert job["mountVolumes"]["fileServers"] is None
    assert "properties" not in job and "additionalProperties" not in job


def test_a_cluster_and_a_file_server_have_nulls_and_the_sdk_s_names() -> None:
    cluster = flatten(CLUSTER)
    assert cluster["errors"] is None and cluster["subnet"] is None
    assert cluster["scaleSettings"] == {
        "manual": {"targetNodeCount": 1, "nodeDeallocationOption": "requeue"},
        "autoScale": None,
    }
    assert cluster["userAccountSettings"]["adminUserPassword"] is None
    assert cluster["virtualMachineConfiguration"]["imageReference"]["virtualMachineImageId"] is None
    assert cluster["nodeStateCounts"]["leavingNodeCount"] is None
    server = flatten(FILE_SERVER)
    assert server["dataDisks"] == {
        "diskSizeInGb": 10,
        "cachingType": None,
        "diskCount": 2,
        "storageAccountType": "Standard_LRS",
    }
    assert server["mountSettings"]["fileServerPublicIp"] == "127.0.0.1"
    assert server["mountSettings"]["fileServerInternalIp"] is None


def test_the_model_is_found_by_type_in_any_case_and_unknown_keys_are_kept() -> None:
    odd = {**EXPERIMENT, "type": "microsoft.batchai/Workspaces/EXPERIMENTS", "etag": "x", "properties": {"new": 1}}
    shown = flatten(odd)
    assert shown["creationTime"] is None and shown["provisioningState"] is None  # the Experiment model's
    assert shown["etag"] == "x" and shown["new"] == 1  # (nothing the server sent is lost)
    storage = {
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
        "type": "Microsoft.Storage/storageAccounts",
        "properties": {"creationTime": T},
    }
    assert flatten(storage) == {"id": storage["id"], "type": storage["type"], "creationTime": T, "resourceGroup": "rg"}


def test_list_results_take_the_model_their_command_names() -> None:
    files = flatten(FILES, "File")
    assert files[0] == {
        "name": "stdout.txt",
        "fileType": "file",
        "downloadUrl": "http://x",
        "lastModified": None,
        "contentLength": 3,
    }
    assert files[1]["lastModified"] == "2026-11-23T03:27:20.051190+00:00" and files[1]["downloadUrl"] is None
    assert flatten(USAGES, "Usage")[0]["name"] == {"value": "cores", "localizedValue": "Cores"}
    assert flatten([{"nodeId": "n"}], "RemoteLoginInformation") == [{"nodeId": "n", "ipAddress": None, "port": None}]


def test_tsv_writes_none_for_a_null_cell_as_knack_does() -> None:
    # knack's _TsvOutput._dump_obj writes str(value) for anything but a str, list or dict: None is "None".
    assert render_tsv(flatten([*NODES, {"nodeId": "n"}], "RemoteLoginInformation")) == (
        "127.0.0.1\tnode-0\t22\nNone\tn\tNone"
    )


# -- against the SDK itself ----------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?!^)_([a-zA-Z])")


def knack_todict(obj: Any) -> Any:
    """knack.util.todict as az 2.0 (2018) ran it on the SDK's objects, without msrest's later catch-all
    ``additional_properties`` (the June 2018 SDK had none)."""
    if isinstance(obj, dict):
        return {k: knack_todict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [knack_todict(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, date | time | datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return str(obj)
    if hasattr(obj, "__dict__"):
        return {
            _CAMEL.sub(lambda m: m.group(1).upper(), k): knack_todict(v)
            for k, v in obj.__dict__.items()
            if not callable(v) and not k.startswith("_") and k != "additional_properties"
        }
    return obj


@pytest.mark.parametrize(
    ("model", "wire"),
    [
        ("Job", JOB),
        ("Cluster", CLUSTER),
        ("FileServer", FILE_SERVER),
        ("Workspace", WORKSPACE),
        ("Experiment", EXPERIMENT),
        ("File", FILES[1]),
        ("Usage", USAGES[0]),
        ("RemoteLoginInformation", NODES[0]),
    ],
)
def test_the_shape_is_the_sdk_s_objects_printed_by_knack(model: str, wire: dict[str, Any]) -> None:
    models = pytest.importorskip("azure.mgmt.batchai.models")
    serialization = pytest.importorskip("msrest.serialization")
    classes = {name: cls for name, cls in vars(models).items() if isinstance(cls, type)}
    sdk_object = serialization.Deserializer(classes)(model, wire)
    expected = with_resource_groups(knack_todict(sdk_object))
    assert flatten(wire, None if "type" in wire else model) == expected


def test_the_committed_table_is_the_installed_sdk_s() -> None:
    pytest.importorskip("azure.mgmt.batchai.models")
    generated = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_az_models.py")], capture_output=True, text=True, check=True
    ).stdout
    committed = (ROOT / "src" / "batchai" / "cli" / "sdk_models.py").read_text()
    assert generated == committed, "run: python tools/gen_az_models.py > src/batchai/cli/sdk_models.py"
