"""``batchai job``, ``batchai job file`` and ``batchai job node``: as ``az batchai job ...``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from batchai.cli.arm import group_option, workspace_option, workspace_path
from batchai.cli.az_shape import iso_datetime
from batchai.cli.client import Client, error_message, segment
from batchai.cli.clusters import file_server_id, mount_options
from batchai.cli.common import command, confirm, ensure_missing, no_wait_option, warn, yes_option
from batchai.cli.config_files import add_mounts, load_properties, storage_account
from batchai.cli.errors import CliError, ServerUnreachable
from batchai.cli.node_exec import exec_on_node, exec_options
from batchai.cli.tables import job_file_table, job_table, remote_login_table
from batchai.cli.transfer import download, progress_bar

TERMINAL = ("succeeded", "failed")


def experiment_option(fn: Any) -> Any:
    return click.option("-e", "--experiment", required=True, help="Name of experiment.")(fn)


def job_path(client: Client, group: str, workspace: str, experiment: str, name: str) -> str:
    return f"{workspace_path(client, group, workspace)}/experiments/{segment(experiment)}/jobs/{segment(name)}"


@click.group("job", help="Commands to manage jobs.")
def job() -> None:
    pass


def name_option(fn: Any) -> Any:
    return click.option("-n", "--name", "-j", "--job", "name", required=True, help="Name of job.")(fn)


@command(job, "create", table=job_table)
@group_option
@workspace_option
@experiment_option
@name_option
@click.option("-f", "--config-file", required=True, help="A JSON file with the job's properties (job.json).")
@click.option("-c", "--cluster", help="Name or ARM id of the cluster to run on.")
@mount_options
def job_create(
    client: Client,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    config_file: str,
    cluster: str | None,
    storage_account_name: str | None,
    storage_account_key: str | None,
    afs_name: str | None,
    afs_mount_path: str,
    bfs_name: str | None,
    bfs_mount_path: str,
    nfs: str | None,
    nfs_mount_path: str,
) -> Any:
    """Create a job (it is queued, then runs on the cluster)."""
    account = storage_account(storage_account_name)
    path = job_path(client, group, workspace, experiment, name)
    ensure_missing(client, path, "A job with given name, experiment, workspace and resource group already exists.")
    props = load_properties(config_file, account, storage_account_key)
    if cluster:
        cluster_id = (
            cluster
            if cluster.startswith("/subscriptions/")
            else (f"{workspace_path(client, group, workspace)}/clusters/{segment(cluster)}")
        )
        props["cluster"] = {"id": cluster_id}
    if not (props.get("cluster") or {}).get("id"):
        raise CliError("the following arguments are required: -c/--cluster (or cluster.id in the job file)", 2)
    mounts = add_mounts(
        props.get("mountVolumes"),
        account,
        afs_name,
        afs_mount_path,
        bfs_name,
        bfs_mount_path,
        file_server_id(client, group, workspace, nfs),
        nfs_mount_path,
    )
    if mounts:
        props["mountVolumes"] = mounts
    return client.put(path, {"properties": props})


@command(job, "show", table=job_table)
@group_option
@workspace_option
@experiment_option
@name_option
def job_show(client: Client, group: str, workspace: str, experiment: str, name: str) -> Any:
    """Show information about a job."""
    return client.get(job_path(client, group, workspace, experiment, name))


@command(job, "list", table=job_table)
@group_option
@workspace_option
@experiment_option
def job_list(client: Client, group: str, workspace: str, experiment: str) -> Any:
    """List jobs."""
    return client.list(f"{workspace_path(client, group, workspace)}/experiments/{segment(experiment)}/jobs")


@command(job, "delete")
@group_option
@workspace_option
@experiment_option
@name_option
@yes_option
@no_wait_option
def job_delete(client: Client, group: str, workspace: str, experiment: str, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete a job (a running job is stopped first). Its output files stay where they are."""
    confirm(yes, f"delete job '{name}'")
    path = job_path(client, group, workspace, experiment, name)
    client.get(path)
    client.delete(path)
    return None


@command(job, "terminate")
@group_option
@workspace_option
@experiment_option
@name_option
@yes_option
@no_wait_option
def job_terminate(
    client: Client, group: str, workspace: str, experiment: str, name: str, yes: bool, no_wait: bool
) -> Any:
    """Terminate a job."""
    confirm(yes, f"terminate job '{name}'")
    path = job_path(client, group, workspace, experiment, name)
    client.post(path + "/terminate")
    if not no_wait:
        wait_terminal(client, path, interval=0.5, show=False)
    return None


def az_time(value: Any) -> Any:
    """A wire time as az's progress lines wrote it (Python's ``str`` of a datetime): ``2018-06-15
    06:27:49.692000+00:00``."""
    shown = iso_datetime(value)
    return shown.replace("T", " ", 1) if isinstance(shown, str) else shown


def wait_terminal(client: Client, path: str, interval: float, show: bool) -> dict[str, Any]:
    """Poll the job until it succeeds or fails; with ``show``, report its progress on stderr as az did."""
    last = None
    started = False
    while True:
        current = through_restarts(lambda: client.get(path))
        props = current["properties"]
        state = props["executionState"]
        info = props.get("executionInfo") or {}
        if show and last is None:
            warn(f"Job submitted at {az_time(props.get('creationTime'))}")
        if show and info.get("startTime") and not started:
            warn(f"Job started execution at {az_time(info['startTime'])}")
            started = True
        if show and state != last:
            warn(f"Job state: {state}")
        last = state
        if state in TERMINAL:
            return dict(current)
        time.sleep(interval)


@command(job, "wait", flat=False)
@group_option
@workspace_option
@experiment_option
@name_option
@click.option("--interval", type=float, default=5.0, show_default=True, help="Polling interval in seconds.")
def job_wait(client: Client, group: str, workspace: str, experiment: str, name: str, interval: float) -> Any:
    """Wait for the job to finish; exit with the job's exit code (255 if it failed without one)."""
    final = wait_terminal(client, job_path(client, group, workspace, experiment, name), interval, show=True)
    info = final["properties"].get("executionInfo") or {}
    code = info.get("exitCode")
    if final["properties"]["executionState"] == "failed":
        warn(f'The job "{name}" in resource group "{group}" failed.')
        errors = info.get("errors") or []
        if errors:
            warn(f"Job failed: {errors[-1].get('message')}")
        sys.exit(code if code not in (None, 0) else 255)
    if info.get("startTime") and info.get("endTime"):
        took = datetime.fromisoformat(info["endTime"]) - datetime.fromisoformat(info["startTime"])
        warn(f"Job completed at {az_time(info['endTime'])}; execution took {took}")
    sys.exit(code or 0)


# -- job files -----------------------------------------------------------------------------------------
@click.group("file", help="Commands to list and stream files in job's output directories.")
def job_file() -> None:
    pass


job.add_command(job_file)


def file_options(fn: Any) -> Any:
    for option in reversed(
        [
            group_option,
            workspace_option,
            experiment_option,
            click.option("-j", "--job", "name", required=True, help="Name of job."),
            click.option(
                "-d",
                "--output-directory-id",
                default="stdouterr",
                show_default=True,
                help="Id of the job's output directory (as in job.json), or stdouterr.",
            ),
            click.option("-p", "--path", default=".", show_default=True, help="Relative path in the output directory."),
        ]
    ):
        fn = option(fn)
    return fn


def list_files(client: Client, path: str, directory_id: str, sub_path: str, expiry: int = 60) -> list[Any]:
    params = {"outputdirectoryid": directory_id, "directory": sub_path, "linkexpiryinminutes": expiry}
    return client.list(path + "/listOutputFiles", method="POST", params=params)


@command(job_file, "list", table=job_file_table, model="File")
@file_options
@click.option("--expiry", type=int, default=60, show_default=True, help="Minutes the download links stay valid.")
def job_file_list(
    client: Client,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    output_directory_id: str,
    path: str,
    expiry: int,
) -> Any:
    """List the files of a job's output directory (default: stdouterr) with download links."""
    return list_files(client, job_path(client, group, workspace, experiment, name), output_directory_id, path, expiry)


@command(job_file, "stream", flat=False)
@file_options
@click.option("-f", "--file-name", required=True, help="Name of the file to stream, e.g. stderr.txt.")
@click.option("--interval", type=float, default=0.5, show_default=True, help="Polling interval in seconds.")
def job_file_stream(
    client: Client,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    output_directory_id: str,
    path: str,
    file_name: str,
    interval: float,
) -> Any:
    """Print a job's file and follow what is appended to it until the job ends."""
    jpath = job_path(client, group, workspace, experiment, name)
    offset = 0
    announced = waiting = False
    out = sys.stdout.buffer

    def look() -> str:
        """One look: the job's state, and what was appended to the file since the last."""
        nonlocal offset, announced, waiting
        state = str(client.get(jpath)["properties"]["executionState"])
        found = next(
            (
                f
                for f in list_files(client, jpath, output_directory_id, path)
                if f["name"] == file_name and f.get("fileType") == "file"
            ),
            None,
        )
        if found is not None:
            if not announced:
                warn(f'File found with URL "{found["downloadUrl"]}". Start streaming')
                announced = True
            if int(found["properties"]["contentLength"]) > offset:
                for chunk in _chunks_from(client, found["downloadUrl"], offset):
                    out.write(chunk)
                    offset += len(chunk)
                out.flush()
        elif state in TERMINAL:
            warn(f'The file "{file_name}" not found for the completed job.')
        elif not waiting:
            warn(f'The file "{file_name}" not found. Waiting for the job to generate it.')
            waiting = True
        return state

    while through_restarts(look) not in TERMINAL:
        time.sleep(interval)
    return None


def _chunks_from(client: Client, url: str, offset: int) -> Iterator[bytes]:
    """The bytes of ``url`` from ``offset`` on, as they come."""
    with client.transport_errors(), client.http.stream("GET", url, headers={"Range": f"bytes={offset}-"}) as response:
        if response.status_code >= 400:
            response.read()
            raise CliError(error_message(response))
        yield from response.iter_bytes()


T = TypeVar("T")
# How long the commands that follow a job (wait, file stream) keep trying a server that stopped answering.
RECONNECT_SECONDS = 120.0


def through_restarts(look: Callable[[], T], patience: float = RECONNECT_SECONDS) -> T:
    """``look`` (one look at a job being followed), tried again every second while the server cannot be
    reached, for up to ``patience`` seconds: a server restarted meanwhile does not end the command (the job
    runs on without it)."""
    deadline: float | None = None
    while True:
        try:
            answer = look()
        except ServerUnreachable as exc:
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
                warn(f"{exc.message.split('. Is it running?')[0]}; trying again for {patience:.0f} s")
            elif now >= deadline:
                raise
            time.sleep(1.0)
            continue
        if deadline is not None:
            warn("The batchai server answers again.")
        return answer


@command(job_file, "download", flat=False)
@file_options
@click.option("-f", "--file-name", help="Only this file (default: every file in the directory).")
@click.option(
    "--dest",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Local directory to download into.",
)
def job_file_download(
    client: Client,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    output_directory_id: str,
    path: str,
    file_name: str | None,
    dest: str,
) -> Any:
    """Download a job's output files into a local directory, with the folders below it (as
    ``storage file download-batch`` does); ``--file-name`` downloads one file."""
    jpath = job_path(client, group, workspace, experiment, name)
    if file_name is None:
        files = [(f"{folder}{f['name']}", f) for folder, f in _files_below(client, jpath, output_directory_id, path)]
    else:
        listed = list_files(client, jpath, output_directory_id, path)
        files = [(file_name, f) for f in listed if f.get("fileType") == "file" and f["name"] == file_name]
    if file_name and not files:
        raise CliError(f"no file '{file_name}' in '{output_directory_id}'")
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    done = []
    with progress_bar() as progress:
        for relative, item in files:
            local = target / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            size = download(client, progress, item["downloadUrl"], local, relative)
            done.append({"name": relative, "path": str(local), "contentLength": size})
    return done


def _files_below(client: Client, jpath: str, directory_id: str, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The files of ``path`` in a job's output directory and of every folder below it, each with the folder it
    is in (relative to ``path``, with a trailing '/'; '' for ``path`` itself)."""
    folders = [""]
    while folders:
        folder = folders.pop(0)
        for item in list_files(client, jpath, directory_id, f"{path.rstrip('/')}/{folder}" if folder else path):
            if item.get("fileType") == "directory":
                folders.append(f"{folder}{item['name']}/")
            else:
                yield folder, item


# -- job nodes -----------------------------------------------------------------------------------------
@click.group("node", help="Commands to work with nodes which executed a job.")
def job_node() -> None:
    pass


job.add_command(job_node)


@command(job_node, "list", table=remote_login_table, model="RemoteLoginInformation")
@group_option
@workspace_option
@experiment_option
@click.option("-j", "--job", "name", required=True, help="Name of job.")
def job_node_list(client: Client, group: str, workspace: str, experiment: str, name: str) -> Any:
    """List the nodes that ran the job."""
    return client.list(
        job_path(client, group, workspace, experiment, name) + "/listRemoteLoginInformation", method="POST"
    )


@command(job_node, "exec", flat=False)
@group_option
@workspace_option
@experiment_option
@click.option("-j", "--job", "name", required=True, help="Name of job.")
@exec_options
def job_node_exec(
    client: Client,
    group: str,
    workspace: str,
    experiment: str,
    name: str,
    node_id: str | None,
    command: str | None,
    addresses: tuple[str, ...],
    **_ssh: Any,
) -> Any:
    """Run a command line on a node of the job, in its working directory, and print its output (its exit code
    is this command's), and/or forward local ports to the node's ports."""
    exec_on_node(client, job_path(client, group, workspace, experiment, name), node_id, command, addresses)
