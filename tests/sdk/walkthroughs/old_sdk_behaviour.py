# mypy: ignore-errors
# (runs in an old SDK's venv; the dev venv's azure-mgmt-batchai is another, without these models)
"""How the first Batch AI SDKs (azure-mgmt-batchai 0.2.0, api-version 2017-09-01-preview, and 1.0.1, 2018-03-01:
no workspaces or experiments) meet batchai: errors (msrestazure's ``CloudError``), subscription-wide lists paged by
``maxresults`` and ``nextLink``, long-running operations through msrestazure's ``AzureOperationPoller``, and what
the models make of the server's JSON (enums, numbers, datetimes).

Run with an SDK virtual environment's python: ``python old_sdk_behaviour.py WORK_DIR`` (jobs write their output
under WORK_DIR, on the server's host), with the server in $BATCHAI_ENDPOINT/$BATCHAI_TOKEN. Prints one JSON
object; the tests assert on it. Anything unexpected is an exception (a non-zero exit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from datetime import datetime
from typing import Any

import azure.mgmt.batchai.models as models
from msrestazure.azure_exceptions import CloudError

from batchai import sdk

DEADLINE_SECONDS = 60
GROUP = "oldsdk"
USER = models.UserAccountSettings(admin_user_name="demoUser", admin_user_password="demo-Passw0rd")


class Captured(logging.Handler):
    """Warnings the SDK logs while deserializing (e.g. a value that is not in an enum)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def wait_for(condition: Any, message: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_SECONDS}s waiting for {message}")
        time.sleep(0.1)


def error(call: Any) -> dict[str, Any]:
    """Call and return what the SDK's ``CloudError`` says: status, ARM code and message."""
    try:
        call()
    except CloudError as exc:
        return {"status": exc.status_code, "code": exc.error.error, "message": exc.message, "str": str(exc)}
    raise AssertionError("no error")


def name(value: Any) -> Any:
    """An enum's value (0.2.0's enums are plain ``Enum``, 1.0.1's ``str`` ones); anything else as it is."""
    return getattr(value, "value", value)


def job_parameters(cluster: Any, work_dir: str, command: str) -> Any:
    return models.JobCreateParameters(
        location="westus",
        cluster=models.ResourceId(id=cluster.id),
        node_count=1,
        priority=100,
        experiment_name="exp1",
        std_out_err_path_prefix=work_dir,
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=command),
    )


def main(work_dir: str) -> None:
    captured = Captured()
    logging.getLogger("msrest").addHandler(captured)
    client = sdk.client()
    resources = sdk.resource_client()
    out: dict[str, Any] = {"api_version": client.api_version}
    resources.resource_groups.create_or_update(GROUP, {"location": "westus"})

    def cluster_parameters(nodes: int) -> Any:
        return models.ClusterCreateParameters(
            location="westus",
            vm_size="STANDARD_D1",
            user_account_settings=USER,
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=nodes)),
        )

    # -- long-running creates through AzureOperationPoller -------------------------------------------------------
    created = client.clusters.create(GROUP, "c1", cluster_parameters(1)).result()
    client.clusters.create(GROUP, "c2", cluster_parameters(0)).result()
    out["cluster_created"] = {
        "type": type(created).__name__,
        "name": created.name,
        "location": created.location,
        "provisioning_state": name(created.provisioning_state),
        "vm_priority": name(created.vm_priority),
    }

    # -- errors ---------------------------------------------------------------------------------------------------
    missing_cluster = models.ResourceId(id=created.id.rsplit("/", 1)[0] + "/nosuchcluster")
    errors = {
        "get_missing_cluster": error(lambda: client.clusters.get(GROUP, "nosuchcluster")),
        "missing_cluster_job": error(
            lambda: client.jobs.create(GROUP, "j0", job_parameters(missing_cluster, work_dir, "true")).result()
        ),
    }
    bad = sdk.make_client(type(client), environ={"BATCHAI_ENDPOINT": sdk.connection().endpoint, "BATCHAI_TOKEN": "x"})
    errors["bad_token"] = error(lambda: bad.clusters.get(GROUP, "c1"))
    out["errors"] = errors

    # -- subscription-wide lists, one item a page ------------------------------------------------------------------
    out["clusters"] = [c.name for c in client.clusters.list(models.ClustersListOptions(max_results=1))]
    pages = client.clusters.list(models.ClustersListOptions(max_results=1))
    out["cluster_pages"] = []
    with contextlib.suppress(StopIteration):  # msrest's Paged: advance_page follows nextLink, then stops
        while True:
            out["cluster_pages"].append([c.name for c in pages.advance_page()])
    out["clusters_in_group"] = sorted(c.name for c in client.clusters.list_by_resource_group(GROUP))

    # -- a job that succeeds: its models -------------------------------------------------------------------------
    client.jobs.create(GROUP, "hello", job_parameters(created, work_dir, "echo hello")).result()
    done = wait_for(
        lambda: (j := client.jobs.get(GROUP, "hello")) and name(j.execution_state) in ("succeeded", "failed") and j,
        "the job to end",
    )
    files = client.jobs.list_output_files(
        GROUP, "hello", models.JobsListOutputFilesOptions(outputdirectoryid="stdouterr")
    )
    out["job"] = {
        "type": type(done).__name__,
        "location": done.location,
        "experiment_name": done.experiment_name,
        "priority": done.priority,
        "execution_state": name(done.execution_state),
        "exit_code": done.execution_info.exit_code,
        "tool_type": name(done.tool_type),
        "creation_time_is_datetime": isinstance(done.creation_time, datetime),
        "files": {f.name: {"content_length": f.content_length, "has_url": bool(f.download_url)} for f in files},
    }

    # -- a job that runs, its node's login, terminate and delete through the pollers ------------------------------
    client.jobs.create(GROUP, "sleeper", job_parameters(created, work_dir, "sleep 600")).result()
    wait_for(lambda: name(client.jobs.get(GROUP, "sleeper").execution_state) == "running", "the job to run")
    logins = list(client.jobs.list_remote_login_information(GROUP, "sleeper"))
    out["job_remote_login"] = [(n.node_id, n.ip_address, type(n.port).__name__) for n in logins]
    out["cluster_remote_login"] = [n.node_id for n in client.clusters.list_remote_login_information(GROUP, "c1")]
    client.jobs.terminate(GROUP, "sleeper").result()
    out["after_terminate"] = name(client.jobs.get(GROUP, "sleeper").execution_state)
    out["jobs"] = sorted(j.name for j in client.jobs.list(models.JobsListOptions(max_results=1)))

    for job in ("hello", "sleeper"):
        client.jobs.delete(GROUP, job).result()
    for cluster in ("c1", "c2"):
        client.clusters.delete(GROUP, cluster).result()
    out["after_delete"] = error(lambda: client.jobs.get(GROUP, "hello"))["status"]
    out["jobs_left"] = [j.name for j in client.jobs.list()]
    out["clusters_left"] = [c.name for c in client.clusters.list()]
    resources.resource_groups.delete(GROUP).result()
    out["group_exists"] = resources.resource_groups.check_existence(GROUP)
    out["sdk_warnings"] = captured.messages
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
