"""Errors, paging, long-running operations and model parsing of the first SDKs (azure-mgmt-batchai 0.2.0 and
1.0.1, api-versions 2017-09-01-preview and 2018-03-01: no workspaces) against a real server:
``walkthroughs/old_sdk_behaviour.py`` runs in the SDK's environment and reports what it saw as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.sdk.conftest import SdkEnv

API_VERSIONS = {"0.2.0": "2017-09-01-preview", "1.0.1": "2018-03-01"}


@pytest.mark.timeout(1200)  # the first run makes the SDK's virtual environment
@pytest.mark.parametrize("version", list(API_VERSIONS))
def test_errors_paging_and_long_running_operations_of_the_first_sdks(
    version: str, sdk_env: Callable[[str], SdkEnv], server: Server, tmp_path: Path
) -> None:
    # The configuration comes from the server's home this time (its credentials.json), not the variables.
    result = sdk_env(version).run(
        "old_sdk_behaviour.py",
        str(tmp_path),
        server=server,
        env={"BATCHAI_HOME": str(server.home), "BATCHAI_ENDPOINT": "", "BATCHAI_TOKEN": ""},
    )
    assert result.returncode == 0, f"old_sdk_behaviour.py failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    out = json.loads(result.stdout)
    assert out["api_version"] == API_VERSIONS[version]

    # Errors: msrestazure's CloudError carries the ARM error's status, code and message.
    expected = {
        "get_missing_cluster": (404, "ClusterNotFound", "The cluster 'nosuchcluster' was not found."),
        "missing_cluster_job": (400, "ClusterNotFound", "/clusters/nosuchcluster' was not found."),
        "bad_token": (401, "InvalidAuthenticationToken", "Authentication failed. The access token is invalid."),
    }
    for name, (status, code, message) in expected.items():
        error = out["errors"][name]
        assert (error["status"], error["code"]) == (status, code), (name, error)
        assert message in error["message"] and code in error["str"] and message in error["str"], (name, error)

    # Long-running operations complete through AzureOperationPoller; resources carry their location.
    assert out["cluster_created"] == {
        "type": "Cluster",
        "name": "c1",
        "location": "westus",
        "provisioning_state": "succeeded",
        "vm_priority": "dedicated",
    }
    assert out["after_terminate"] == "failed"
    assert out["after_delete"] == 404
    assert out["jobs_left"] == [] and out["clusters_left"] == [] and out["group_exists"] is False

    # Subscription-wide lists, paged by maxresults and nextLink.
    assert out["clusters"] == ["c1", "c2"] and out["cluster_pages"] == [["c1"], ["c2"]]
    assert out["clusters_in_group"] == ["c1", "c2"] and out["jobs"] == ["hello", "sleeper"]

    # The models parse what the server sends: enums, numbers, datetimes, files; no warnings.
    assert out["job"] == {
        "type": "Job",
        "location": "westus",
        "experiment_name": "exp1",
        "priority": 100,
        "execution_state": "succeeded",
        "exit_code": 0,
        "tool_type": "custom",
        "creation_time_is_datetime": True,
        "files": {
            "execution.log": {
                "content_length": out["job"]["files"]["execution.log"]["content_length"],
                "has_url": True,
            },
            "stderr.txt": {"content_length": 0, "has_url": True},
            "stdout.txt": {"content_length": len("hello\n"), "has_url": True},
        },
    }
    # These SDKs declare RemoteLoginInformation.port a float (the API's "number"): the server's 22-like int parses.
    assert out["job_remote_login"] == [["node-0", "127.0.0.1", "float"]]
    assert out["cluster_remote_login"] == ["node-0"]
    assert out["sdk_warnings"] == []
