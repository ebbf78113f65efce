"""How the official Batch AI SDK meets batchai, for either generation (azure-mgmt-batchai 7.0.0 or 2.0.0):
error responses, paging by ``maxresults`` and ``nextLink``, long-running operations through the SDK's pollers,
and what the SDK's models make of the server's JSON (datetimes, durations, enums, unknown keys).

Run with an SDK virtual environment's python: ``python sdk_behaviour.py RESOURCE_GROUP WORK_DIR`` (jobs write their
output under WORK_DIR, on the server's host), with the server in
$BATCHAI_ENDPOINT/$BATCHAI_TOKEN. Prints one JSON object; the tests assert on it. Anything unexpected is
an exception (a non-zero exit).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import azure.mgmt.batchai.models as models

from batchai import sdk

DEADLINE_SECONDS = 60
WORK_DIR = ""  # set from the command line
USER = models.UserAccountSettings(admin_user_name="demoUser", admin_user_password="demo-Passw0rd")  # 2.0.0 needs one


class Captured(logging.Handler):
    """The messages logged at ``level`` and above: warnings the SDK logs while deserializing (e.g. a value that
    is not in an enum), or (DEBUG) its request logging."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
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


class Sdk:
    """The two generations' differences in one place."""

    def __init__(self) -> None:
        self.client = sdk.client()
        self.resources = sdk.resource_client()
        self.core = hasattr(self.client.jobs, "begin_create")
        self.version = "7.0.0" if self.core else "2.0.0"

    def lro(self, operations: Any, name: str, *args: Any) -> Any:
        """Start a long-running operation and wait for its result through the SDK's poller."""
        poller = getattr(operations, f"begin_{name}" if self.core else name)(*args)
        return poller.result()

    def error(self, call: Any) -> dict[str, Any]:
        """Call and return what the SDK's exception says: type, status, ARM code and message."""
        try:
            call()
        except Exception as exc:
            if self.core:
                from azure.core.exceptions import HttpResponseError

                assert isinstance(exc, HttpResponseError), repr(exc)
                error = exc.error
                return {
                    "type": type(exc).__name__,
                    "status": exc.status_code,
                    "code": error.code if error else None,
                    "message": error.message if error else None,
                    "str": str(exc),
                }
            cloud_error = importlib.import_module("msrestazure.azure_exceptions").CloudError
            assert isinstance(exc, cloud_error), repr(exc)
            return {
                "type": type(exc).__name__,
                "status": exc.status_code,
                "code": exc.error.error if exc.error is not None else None,
                "message": exc.error.message if exc.error is not None else None,
                "str": str(exc),
            }
        raise AssertionError("no error was raised")

    def pages(self, pager: Any) -> list[list[str]]:
        """The names on each page of a paged list, page by page."""
        if self.core:
            return [[item.name for item in page] for page in pager.by_page()]
        out = []
        while True:
            try:
                out.append([item.name for item in pager.advance_page()])
            except StopIteration:
                return out


def custom_job(cluster_id: str, command: str, **extra: Any) -> Any:
    return models.JobCreateParameters(
        cluster=models.ResourceId(id=cluster_id),
        node_count=1,
        std_out_err_path_prefix=WORK_DIR,
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=command),
        **extra,
    )


def main(group: str) -> dict[str, Any]:
    captured = Captured()
    logging.getLogger().addHandler(captured)
    s = Sdk()
    client = s.client
    ws, exp = "ws", "exp"
    out: dict[str, Any] = {"version": s.version, "client": type(client).__name__}

    s.resources.resource_groups.create_or_update(group, {"location": "eastus"})
    if s.core:
        s.lro(client.workspaces, "create", group, ws, models.WorkspaceCreateParameters(location="eastus"))
    else:
        s.lro(client.workspaces, "create", group, ws, "eastus")
    s.lro(client.experiments, "create", group, ws, exp)

    # -- long-running operations: create through the poller gives the resource ---------------------------
    scale = models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=1))
    created = s.lro(
        client.clusters,
        "create",
        group,
        ws,
        "c1",
        models.ClusterCreateParameters(vm_size="STANDARD_D1", user_account_settings=USER, scale_settings=scale),
    )
    out["cluster_created"] = {
        "name": created.name,
        "provisioning_state": str(created.provisioning_state),
        "allocation_state": str(created.allocation_state),
        "current_node_count": created.current_node_count,
    }
    empty = models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=0))
    s.lro(
        client.clusters,
        "create",
        group,
        ws,
        "empty",
        models.ClusterCreateParameters(vm_size="STANDARD_D1", user_account_settings=USER, scale_settings=empty),
    )

    # -- errors ----------------------------------------------------------------------------------------------
    errors: dict[str, Any] = {}
    errors["bad_workspace_name"] = s.error(
        lambda: s.lro(client.experiments, "create", group, ws, "exp\u00e9rience")  # \w in the SDK, not on Azure
    )
    missing_cluster = created.id.rsplit("/", 1)[0] + "/nosuchcluster"
    errors["missing_cluster_job"] = s.error(
        lambda: s.lro(client.jobs, "create", group, ws, exp, "orphan", custom_job(missing_cluster, "true"))
    )
    errors["get_missing_cluster"] = s.error(lambda: client.clusters.get(group, ws, "nosuchcluster"))
    s.lro(client.jobs, "create", group, ws, exp, "fixed", custom_job(created.id, "true"))
    errors["job_change_conflict"] = s.error(
        lambda: s.lro(client.jobs, "create", group, ws, exp, "fixed", custom_job(created.id, "false"))
    )
    bad = sdk.make_client(type(client), environ={"BATCHAI_ENDPOINT": sdk.connection().endpoint, "BATCHAI_TOKEN": "x"})
    errors["bad_token"] = s.error(lambda: bad.clusters.get(group, ws, "c1"))
    out["errors"] = errors

    # -- paging: maxresults=2 over 5 jobs follows nextLink ---------------------------------------------------
    for index in range(4):
        s.lro(client.jobs, "create", group, ws, exp, f"page{index}", custom_job(created.id, "true"))
    options = models.JobsListByExperimentOptions(max_results=2)
    out["pages"] = s.pages(client.jobs.list_by_experiment(group, ws, exp, options))
    out["all_jobs"] = sorted(j.name for j in client.jobs.list_by_experiment(group, ws, exp, options))

    # -- what the models make of a job's JSON: durations, datetimes, enums, files ----------------------------
    job_args = {
        "constraints": models.JobBasePropertiesConstraints(max_wall_clock_time=timedelta(hours=2, minutes=30)),
        "environment_variables": [models.EnvironmentVariable(name="GREETING", value="hello")],
        "secrets": [models.EnvironmentVariableWithSecretValue(name="SECRET", value="s3cret")],
        "output_directories": [models.OutputDirectory(id="OUT", path_prefix=WORK_DIR)],
    }
    s.lro(
        client.jobs,
        "create",
        group,
        ws,
        exp,
        "work",
        custom_job(
            created.id,
            'echo "$GREETING" && mkdir -p $AZ_BATCHAI_OUTPUT_OUT && echo m > $AZ_BATCHAI_OUTPUT_OUT/m.txt',
            **job_args,
        ),
    )
    done = wait_for(
        lambda: (j := client.jobs.get(group, ws, exp, "work")).execution_state in ("succeeded", "failed") and j,
        "job work to end",
    )
    info = done.execution_info
    files = list(
        client.jobs.list_output_files(
            group, ws, exp, "work", models.JobsListOutputFilesOptions(outputdirectoryid="stdouterr")
        )
    )
    # The POST lists page too: 7.0.0 follows their nextLink with GET, 2.0.0 with POST.
    one_by_one = models.JobsListOutputFilesOptions(outputdirectoryid="stdouterr", max_results=1)
    out["file_pages"] = s.pages(client.jobs.list_output_files(group, ws, exp, "work", one_by_one))
    out["job"] = {
        "execution_state": str(done.execution_state),
        "tool_type": str(done.tool_type),
        "max_wall_clock_time": str(done.constraints.max_wall_clock_time),
        "max_wall_clock_time_is_timedelta": isinstance(done.constraints.max_wall_clock_time, timedelta),
        "creation_time_is_datetime": isinstance(done.creation_time, datetime),
        "creation_time_is_aware": done.creation_time.tzinfo is not None,
        "start_time_is_datetime": isinstance(info.start_time, datetime),
        "end_time_is_datetime": isinstance(info.end_time, datetime),
        "exit_code": info.exit_code,
        "secrets": [(x.name, x.value) for x in done.secrets or []],
        "environment_variables": [(x.name, x.value) for x in done.environment_variables or []],
        "additional_properties": sorted((getattr(done, "additional_properties", None) or {}).keys()),
        "files": {
            f.name: {
                "file_type": str(f.file_type),
                "has_url": bool(f.download_url),
                "content_length": f.content_length,
                "last_modified_is_datetime": isinstance(f.last_modified, datetime),
            }
            for f in files
        },
    }
    cluster = client.clusters.get(group, ws, "c1")
    out["cluster"] = {
        "allocation_state": str(cluster.allocation_state),
        "vm_size": cluster.vm_size,
        "creation_time_is_datetime": isinstance(cluster.creation_time, datetime),
        "node_state_counts": cluster.node_state_counts.as_dict(),
        "additional_properties": sorted((getattr(cluster, "additional_properties", None) or {}).keys()),
        "remote_login": [
            (n.node_id, n.ip_address, n.port) for n in client.clusters.list_remote_login_information(group, ws, "c1")
        ],
    }
    out["usages"] = [u.name.value for u in client.usages.list("eastus")]
    out["operations"] = len(list(client.operations.list()))
    if s.core:
        updated = client.workspaces.update(group, ws, models.WorkspaceUpdateParameters(tags={"team": "a"}))
        resized = client.clusters.update(
            group,
            ws,
            "empty",
            models.ClusterUpdateParameters(
                scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=0))
            ),
        )
    else:
        updated = client.workspaces.update(group, ws, tags={"team": "a"})
        resized = client.clusters.update(
            group,
            ws,
            "empty",
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=0)),
        )
    out["updates"] = {"workspace_tags": updated.tags, "cluster_target": resized.scale_settings.manual.target_node_count}

    # -- logging_enable: requests are logged with their headers, but never the token ---------------------------
    trace = Captured(logging.DEBUG)
    for name in ("azure", "msrest"):  # (azure-core's network trace, its HTTP logging, msrest's logger)
        logging.getLogger(name).addHandler(trace)
        logging.getLogger(name).setLevel(logging.DEBUG)
    if s.core:
        sdk.client(logging_enable=True).clusters.get(group, ws, "c1")
    else:
        logged = sdk.client()
        logged.config.enable_http_logger = True  # msrest's switch
        logged.clusters.get(group, ws, "c1")
    token = sdk.connection().token
    out["trace"] = {
        "requests": sum("Request URL" in m or "Request method" in m for m in trace.messages),
        "token_shown": any(token in m for m in trace.messages),
    }

    # -- terminate and delete through the pollers ------------------------------------------------------------
    s.lro(client.jobs, "create", group, ws, exp, "sleeper", custom_job(created.id, "sleep 300"))
    wait_for(lambda: client.jobs.get(group, ws, exp, "sleeper").execution_state == "running", "sleeper to run")
    s.lro(client.jobs, "terminate", group, ws, exp, "sleeper")
    out["after_terminate"] = str(client.jobs.get(group, ws, exp, "sleeper").execution_state)
    ended = wait_for(
        lambda: (j := client.jobs.get(group, ws, exp, "sleeper")).execution_state in ("succeeded", "failed") and j,
        "sleeper to end",
    )
    out["terminated"] = {
        "execution_state": str(ended.execution_state),
        "errors": [e.code for e in ended.execution_info.errors or []],
    }
    s.lro(client.jobs, "delete", group, ws, exp, "sleeper")
    out["after_job_delete"] = s.error(lambda: client.jobs.get(group, ws, exp, "sleeper"))["status"]
    s.lro(client.clusters, "delete", group, ws, "c1")
    out["after_cluster_delete"] = sorted(c.name for c in client.clusters.list_by_workspace(group, ws))
    s.lro(client.experiments, "delete", group, ws, exp)
    s.lro(client.workspaces, "delete", group, ws)
    out["after_workspace_delete"] = [w.name for w in client.workspaces.list_by_resource_group(group)]
    s.lro(s.resources.resource_groups, "delete", group)
    out["group_exists"] = s.resources.resource_groups.check_existence(group)
    out["sdk_warnings"] = captured.messages
    return out


if __name__ == "__main__":
    WORK_DIR = sys.argv[2]
    print(json.dumps(main(sys.argv[1]), indent=2, sort_keys=True, default=str))
