"""Errors, paging, long-running operations and model parsing of the official SDK (7.0.0 and 2.0.0) against a real
server: ``walkthroughs/sdk_behaviour.py`` runs in the SDK's environment and reports what it saw as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.sdk.conftest import SdkEnv

ERROR_TYPES = {
    "7.0.0": {
        "bad_workspace_name": "HttpResponseError",
        "missing_cluster_job": "HttpResponseError",
        "get_missing_cluster": "ResourceNotFoundError",  # HttpResponseError subclasses, by status
        "job_change_conflict": "ResourceExistsError",
        "bad_token": "ClientAuthenticationError",
    },
    "2.0.0": dict.fromkeys(
        ("bad_workspace_name", "missing_cluster_job", "get_missing_cluster", "job_change_conflict", "bad_token"),
        "CloudError",
    ),
}


def report(version: str, sdk_env: Callable[[str], SdkEnv], server: Server, tmp_path: Path) -> dict[str, Any]:
    # The configuration comes from the server's home this time (its credentials.json), not the variables.
    result = sdk_env(version).run(
        "sdk_behaviour.py",
        "behaviour",
        str(tmp_path),
        server=server,
        env={"BATCHAI_HOME": str(server.home), "BATCHAI_ENDPOINT": "", "BATCHAI_TOKEN": ""},
    )
    assert result.returncode == 0, f"sdk_behaviour.py failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return dict(json.loads(result.stdout))


@pytest.mark.timeout(1200)  # the first run makes the SDK's virtual environment
@pytest.mark.parametrize("version", ["7.0.0", "2.0.0"])
def test_errors_paging_and_long_running_operations(
    version: str, sdk_env: Callable[[str], SdkEnv], server: Server, tmp_path: Path
) -> None:
    out = report(version, sdk_env, server, tmp_path)
    assert out["version"] == version

    # Errors: the SDK's exception carries the ARM error's status, code and message.
    errors = out["errors"]
    assert {name: e["type"] for name, e in errors.items()} == ERROR_TYPES[version]
    expected = {
        "bad_workspace_name": (400, "InvalidResourceName", "The experiment name 'exp\u00e9rience' is invalid"),
        "missing_cluster_job": (400, "ClusterNotFound", "clusters/nosuchcluster' was not found."),
        "get_missing_cluster": (404, "ClusterNotFound", "The cluster 'nosuchcluster' was not found."),
        "job_change_conflict": (409, "JobAlreadyExists", "The job 'fixed' exists; jobs cannot be changed"),
        "bad_token": (401, "InvalidAuthenticationToken", "Authentication failed. The access token is invalid."),
    }
    for name, (status, code, message) in expected.items():
        error = errors[name]
        assert (error["status"], error["code"]) == (status, code), (name, error)
        assert message in error["message"] and code in error["str"] and message in error["str"], (name, error)

    # Paging: maxresults=2 gives pages of two, the SDK following nextLink to the end.
    assert out["pages"] == [["fixed", "page0"], ["page1", "page2"], ["page3"]]
    assert out["all_jobs"] == ["fixed", "page0", "page1", "page2", "page3"]

    # Long-running operations complete through the pollers: create gives the resource; terminate returns once
    # the job has ended; deletes leave nothing behind.
    assert out["cluster_created"]["name"] == "c1" and out["cluster_created"]["provisioning_state"] == "succeeded"
    # A new cluster has no nodes yet: it is resizing, as on Azure, until they are there.
    assert out["cluster_created"]["allocation_state"] == "resizing", out["cluster_created"]
    assert out["after_terminate"] == "failed"
    assert out["terminated"] == {"execution_state": "failed", "errors": ["JobTerminated"]}
    assert out["after_job_delete"] == 404
    assert out["after_cluster_delete"] == ["empty"]
    assert out["after_workspace_delete"] == []
    assert out["group_exists"] is False

    # The models parse what the server sends: durations, datetimes, enums, files; no unknown keys, no warnings.
    job = out["job"]
    assert job["execution_state"] == "succeeded" and job["exit_code"] == 0 and job["tool_type"] == "custom"
    assert job["max_wall_clock_time"] == "2:30:00" and job["max_wall_clock_time_is_timedelta"]
    assert job["creation_time_is_datetime"] and job["creation_time_is_aware"]
    assert job["start_time_is_datetime"] and job["end_time_is_datetime"]
    assert job["environment_variables"] == [["GREETING", "hello"]]
    assert job["secrets"] == [["SECRET", None]]  # never sent back
    assert job["additional_properties"] == []
    files = job["files"]
    assert set(files) == {"execution.log", "stderr.txt", "stdout.txt"}
    assert out["file_pages"] == [[name] for name in sorted(files)]
    assert all(f["file_type"] == "file" and f["has_url"] and f["last_modified_is_datetime"] for f in files.values())
    assert files["stdout.txt"]["content_length"] == len("hello\n")
    cluster = out["cluster"]
    assert cluster["vm_size"] == "STANDARD_D1" and cluster["creation_time_is_datetime"]
    assert cluster["allocation_state"] == "steady" and cluster["additional_properties"] == []
    assert cluster["node_state_counts"]["idle_node_count"] + cluster["node_state_counts"]["running_node_count"] == 1
    assert [node[:2] for node in cluster["remote_login"]] == [["node-0", "127.0.0.1"]]
    assert out["usages"] == ["cores"] and out["operations"] > 10
    assert out["updates"] == {"workspace_tags": {"team": "a"}, "cluster_target": 0}
    # logging_enable=True logs every request with its headers: the server's token (which does not expire, unlike
    # Azure's) is not among them.
    assert out["trace"]["requests"] >= 1 and out["trace"]["token_shown"] is False, out["trace"]
    assert out["sdk_warnings"] == []
