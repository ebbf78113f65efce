"""``batchai cluster`` and ``batchai file-server``: as ``az batchai cluster``/``file-server``."""

from __future__ import annotations

import base64
import binascii
import getpass
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import click

from batchai.cli.arm import group_option, workspace_option, workspace_path
from batchai.cli.auto_storage import CONTAINER, CONTAINER_PATH, SHARE, SHARE_PATH, auto_storage_account
from batchai.cli.auto_storage import GROUP as AUTO_GROUP
from batchai.cli.client import Client, segment
from batchai.cli.common import command, confirm, ensure_missing, no_wait_option, warn, yes_option
from batchai.cli.config_files import add_mounts, load_properties, storage_account
from batchai.cli.errors import CliError
from batchai.cli.node_exec import exec_on_node, exec_options
from batchai.cli.tables import cluster_table, file_server_table, remote_login_table, setup_file_table
from batchai.errors import InvalidInput
from batchai.ids import check_name

IMAGES = {
    "ubuntults": {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS", "version": "latest"},
    "ubuntudsvm": {
        "publisher": "microsoft-ads",
        "offer": "linux-data-science-vm-ubuntu",
        "sku": "linuxdsvmubuntu",
        "version": "latest",
    },
}


CUSTOM_IMAGE_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/.+", re.IGNORECASE)


def image_reference(image: str, custom_image: str | None = None) -> dict[str, str]:
    """``UbuntuLTS``, ``UbuntuDSVM`` or ``publisher:offer:sku:[version]`` (as az takes them), with a custom
    image's id."""
    if custom_image is not None and not CUSTOM_IMAGE_ID.match(custom_image):
        raise CliError(f"ill-formed custom image resource id '{custom_image}'", exit_code=2)
    reference: dict[str, str]
    if ":" in image:
        parts = image.split(":")
        if len(parts) != 4 or not all(parts[:3]):
            raise CliError('--image must have the format "publisher:offer:sku:version" or "publisher:offer:sku:"', 2)
        reference = dict(zip(("publisher", "offer", "sku", "version"), parts, strict=True))
        if not reference["version"]:
            del reference["version"]
    elif image.lower() in IMAGES:
        reference = dict(IMAGES[image.lower()])
    else:
        raise CliError(f"unsupported image alias '{image}': supported aliases are UbuntuLTS, UbuntuDSVM", exit_code=2)
    if custom_image:
        reference["virtualMachineImageId"] = custom_image
    return reference


def scale_settings(target: int | None, min_nodes: int | None, max_nodes: int | None) -> dict[str, Any] | None:
    """``-t``, ``--min`` and ``--max`` as az reads them: a fixed size (``-t``, or ``--min`` equal to ``--max``
    with no other target), else auto-scale between ``--min`` and ``--max`` starting at ``-t`` (default 0);
    None if none is given (the config file's settings stand)."""
    if target is None and min_nodes is None and max_nodes is None:
        return None
    if (min_nodes is None) != (max_nodes is None):
        raise CliError("give both --min and --max, or neither", exit_code=2)
    if min_nodes is not None and max_nodes is not None and min_nodes > max_nodes:
        raise CliError("--max must be greater than or equal to --min", exit_code=2)
    if min_nodes == max_nodes and (min_nodes is None or target in (None, min_nodes)):
        return {"manual": {"targetNodeCount": target if target is not None else min_nodes}}
    auto = {"minimumNodeCount": min_nodes, "maximumNodeCount": max_nodes, "initialNodeCount": target or 0}
    return {"autoScale": auto}


def ssh_public_key(key: str | None, generate: bool) -> str | None:
    """``-k`` as a key or a key file; ``--generate-ssh-keys`` uses (or creates) ~/.ssh/id_rsa.pub."""
    if key:
        path = Path(key).expanduser()
        return checked_public_key(path.read_bytes().decode(errors="replace").strip() if path.is_file() else key)
    default = Path.home() / ".ssh" / "id_rsa.pub"
    if generate and not default.exists() and not shutil.which("ssh-keygen"):
        warn("ssh-keygen (OpenSSH) is not installed: no SSH key was generated.")
    elif generate and not default.exists():
        default.parent.mkdir(mode=0o700, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(default)[:-4]],
            check=True,
            capture_output=True,
        )
    if generate:
        warn(
            "Attempted to find or generate SSH key files id_rsa and id_rsa.pub under ~/.ssh to allow SSH access to "
            "the nodes. If using machines without permanent storage, back up your keys to a safe location."
        )
    return checked_public_key(default.read_text().strip()) if default.exists() else None


def checked_public_key(key: str) -> str:
    """An OpenSSH public key (``ssh-rsa AAAA... [comment]``), or a one-line error as az gives."""
    fields = key.split()
    try:
        blob = base64.b64decode(fields[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        if blob[4 : 4 + length].decode() != fields[0]:
            raise ValueError(fields[0])
    except (IndexError, ValueError, struct.error, binascii.Error) as exc:
        raise CliError("incorrect ssh public key value: give an OpenSSH public key or a file holding one") from exc
    return key


def user_account(
    props: dict[str, Any], user: str | None, password: str | None, key: str | None, generate: bool
) -> dict[str, Any]:
    account = dict(props.get("userAccountSettings") or {})
    account["adminUserName"] = user or account.get("adminUserName") or getpass.getuser()
    if password:
        account["adminUserPassword"] = password
    public_key = ssh_public_key(key, generate)
    if public_key:
        account["adminUserSshPublicKey"] = public_key
    return account


def file_server_id(client: Client, group: str, workspace: str, nfs: str | None) -> str | None:
    if not nfs or nfs.startswith("/subscriptions/"):
        return nfs
    return f"{workspace_path(client, group, workspace)}/fileServers/{segment(nfs)}"


@click.group("cluster", help="Commands to manage clusters.")
def cluster() -> None:
    pass


def cluster_path(client: Client, group: str, workspace: str, name: str) -> str:
    return f"{workspace_path(client, group, workspace)}/clusters/{segment(name)}"


def name_option(fn: Any) -> Any:
    return click.option("-n", "--name", "-c", "--cluster", "name", required=True, help="Name of cluster.")(fn)


def mount_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--storage-account-name", help="Storage account for --afs-name/--bfs-name."),
            click.option("--storage-account-key", help="Storage account key (not needed by batchai)."),
            click.option("--afs-name", help="File share to mount."),
            click.option(
                "--afs-mount-path", default="afs", show_default=True, help="Relative mount path of the share."
            ),
            click.option("--bfs-name", help="Blob container to mount."),
            click.option(
                "--bfs-mount-path",
                default="bfs",
                show_default=True,
                help="Relative mount path of the container.",
            ),
            click.option("--nfs", help="Name or id of a file server to mount."),
            click.option(
                "--nfs-mount-path",
                default="nfs",
                show_default=True,
                help="Relative mount path of the file server.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@command(cluster, "create", table=cluster_table)
@group_option
@workspace_option
@name_option
@click.option("-f", "--config-file", help="A JSON file with the cluster's properties (cluster.json).")
@click.option("-s", "--vm-size", help="VM size of the nodes, e.g. STANDARD_NC6.")
@click.option("--vm-priority", type=click.Choice(["dedicated", "lowpriority"], case_sensitive=False))
@click.option("-i", "--image", help="OS image: UbuntuLTS, UbuntuDSVM or publisher:offer:sku[:version].")
@click.option("--custom-image", help="ARM id of a custom virtual machine image.")
@click.option("-t", "--target", type=int, help="Number of nodes (manual scale).")
@click.option("--min", "min_nodes", type=int, help="Minimum nodes (auto-scale).")
@click.option("--max", "max_nodes", type=int, help="Maximum nodes (auto-scale).")
@click.option("-u", "--user-name", help="Admin user name on the nodes (default: current user).")
@click.option("-p", "--password", help="Admin user password.")
@click.option("-k", "--ssh-key", help="SSH public key, or a file holding one.")
@click.option("--generate-ssh-keys", is_flag=True, help="Create ~/.ssh/id_rsa(.pub) if missing and use it.")
@click.option("--setup-task", help="Command line run once on every node when it joins the cluster.")
@click.option("--setup-task-output", help="Where the setup task's output goes (path prefix).")
@click.option("--subnet", help="ARM id of a virtual network subnet.")
@click.option(
    "--use-auto-storage",
    is_flag=True,
    help=f"Mount the share '{SHARE}' at {SHARE_PATH} and the container '{CONTAINER}' at {CONTAINER_PATH} of an "
    f"auto-storage account in the resource group '{AUTO_GROUP}' (created if missing).",
)
@mount_options
def cluster_create(
    client: Client,
    group: str,
    workspace: str,
    name: str,
    config_file: str | None,
    vm_size: str | None,
    vm_priority: str | None,
    image: str | None,
    custom_image: str | None,
    target: int | None,
    min_nodes: int | None,
    max_nodes: int | None,
    user_name: str | None,
    password: str | None,
    ssh_key: str | None,
    generate_ssh_keys: bool,
    setup_task: str | None,
    setup_task_output: str | None,
    subnet: str | None,
    use_auto_storage: bool,
    storage_account_name: str | None,
    storage_account_key: str | None,
    afs_name: str | None,
    afs_mount_path: str,
    bfs_name: str | None,
    bfs_mount_path: str,
    nfs: str | None,
    nfs_mount_path: str,
) -> Any:
    """Create a cluster."""
    try:  # before anything is made for it (the auto-storage account)
        check_name("cluster", name)
    except InvalidInput as exc:
        raise CliError(f"({exc.code}) {exc.message}") from exc
    path = cluster_path(client, group, workspace, name)
    ensure_missing(client, path, f'"{name}" already exists in "{group}" resource group under {workspace} workspace.')
    account = storage_account(storage_account_name)
    props = load_properties(config_file, account, storage_account_key)
    if vm_size:
        props["vmSize"] = vm_size
    if not props.get("vmSize"):
        raise CliError("the following arguments are required: -s/--vm-size (or vmSize in --config-file)", 2)
    if vm_priority:
        props["vmPriority"] = vm_priority.lower()
    if custom_image and not image:
        raise CliError("--custom-image needs -i/--image: the publisher:offer:sku:version the image was made from", 2)
    if image:
        vm_config: dict[str, Any] = dict(props.get("virtualMachineConfiguration") or {})
        vm_config["imageReference"] = image_reference(image, custom_image)
        props["virtualMachineConfiguration"] = vm_config
    props["scaleSettings"] = scale_settings(target, min_nodes, max_nodes) or props.get("scaleSettings")
    if not props["scaleSettings"]:
        raise CliError("give the cluster's size: -t/--target or --min and --max (or scaleSettings in the file)", 2)
    props["userAccountSettings"] = user_account(props, user_name, password, ssh_key, generate_ssh_keys)
    node_setup: dict[str, Any] = dict(props.get("nodeSetup") or {})
    if setup_task:
        if not setup_task_output:
            raise CliError("--setup-task needs --setup-task-output (where its output goes)", exit_code=2)
        node_setup["setupTask"] = {"commandLine": setup_task, "stdOutErrPathPrefix": setup_task_output}
    mounts = add_mounts(
        node_setup.get("mountVolumes"),
        account,
        afs_name,
        afs_mount_path,
        bfs_name,
        bfs_mount_path,
        file_server_id(client, group, workspace, nfs),
        nfs_mount_path,
    )
    if use_auto_storage:
        auto = auto_storage_account(client, group, workspace)
        mounts = add_mounts(mounts, auto, SHARE, SHARE_PATH, CONTAINER, CONTAINER_PATH, None, "")
    if mounts:
        node_setup["mountVolumes"] = mounts
    if node_setup:
        props["nodeSetup"] = node_setup
    if subnet:
        props["subnet"] = {"id": subnet}
    return client.put(path, {"properties": props})


@command(cluster, "show", table=cluster_table)
@group_option
@workspace_option
@name_option
def cluster_show(client: Client, group: str, workspace: str, name: str) -> Any:
    """Show information about a cluster."""
    return client.get(cluster_path(client, group, workspace, name))


@command(cluster, "list", table=cluster_table)
@group_option
@workspace_option
def cluster_list(client: Client, group: str, workspace: str) -> Any:
    """List clusters."""
    return client.list(f"{workspace_path(client, group, workspace)}/clusters")


@command(cluster, "delete")
@group_option
@workspace_option
@name_option
@yes_option
@no_wait_option
def cluster_delete(client: Client, group: str, workspace: str, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete a cluster; jobs still queued or running on it fail."""
    confirm(yes, f"delete cluster '{name}'")
    client.get(cluster_path(client, group, workspace, name))
    client.delete(cluster_path(client, group, workspace, name))
    return None


@command(cluster, "resize", table=cluster_table)
@group_option
@workspace_option
@name_option
@click.option("-t", "--target", type=int, required=True, help="Target number of nodes.")
def cluster_resize(client: Client, group: str, workspace: str, name: str, target: int) -> Any:
    """Resize a cluster (manual scale), keeping its node deallocation option."""
    path = cluster_path(client, group, workspace, name)
    current = client.get(path)["properties"].get("scaleSettings", {})
    option = (current.get("manual") or {}).get("nodeDeallocationOption", "requeue")
    body = {"properties": {"scaleSettings": {"manual": {"targetNodeCount": target, "nodeDeallocationOption": option}}}}
    return client.patch(path, body)


@command(cluster, "auto-scale", table=cluster_table)
@group_option
@workspace_option
@name_option
@click.option("--min", "min_nodes", type=int, required=True, help="Minimum number of nodes.")
@click.option("--max", "max_nodes", type=int, required=True, help="Maximum number of nodes.")
def cluster_auto_scale(client: Client, group: str, workspace: str, name: str, min_nodes: int, max_nodes: int) -> Any:
    """Set the cluster to auto-scale between --min and --max nodes."""
    body = {
        "properties": {"scaleSettings": {"autoScale": {"minimumNodeCount": min_nodes, "maximumNodeCount": max_nodes}}}
    }
    return client.patch(cluster_path(client, group, workspace, name), body)


@click.group("node", help="Commands to work with cluster nodes.")
def cluster_node() -> None:
    pass


cluster.add_command(cluster_node)


@command(cluster_node, "list", table=remote_login_table, model="RemoteLoginInformation")
@group_option
@workspace_option
@click.option("-c", "--cluster", "name", required=True, help="Name of cluster.")
def cluster_node_list(client: Client, group: str, workspace: str, name: str) -> Any:
    """List the nodes of a cluster (id, address, port)."""
    return client.list(cluster_path(client, group, workspace, name) + "/listRemoteLoginInformation", method="POST")


@command(cluster_node, "exec", flat=False)
@group_option
@workspace_option
@click.option("-c", "--cluster", "name", required=True, help="Name of cluster.")
@exec_options
def cluster_node_exec(
    client: Client,
    group: str,
    workspace: str,
    name: str,
    node_id: str | None,
    command: str | None,
    addresses: tuple[str, ...],
    **_ssh: Any,
) -> Any:
    """Run a command line on a node of the cluster and print its output (its exit code is this command's),
    and/or forward local ports to the node's ports."""
    exec_on_node(client, cluster_path(client, group, workspace, name), node_id, command, addresses)


# -- file servers ------------------------------------------------------------------------------------
@click.group("file-server", help="Commands to manage file servers.")
def file_server() -> None:
    pass


def file_server_path(client: Client, group: str, workspace: str, name: str) -> str:
    return f"{workspace_path(client, group, workspace)}/fileServers/{segment(name)}"


@command(file_server, "create", table=file_server_table)
@group_option
@workspace_option
@click.option("-n", "--name", required=True, help="Name of file server.")
@click.option("-f", "--config-file", help="A JSON file with the file server's properties.")
@click.option("-s", "--vm-size", help="VM size.")
@click.option("--disk-count", type=int, help="Number of data disks.")
@click.option("--disk-size", type=int, help="Size of each data disk in GB.")
@click.option("--storage-sku", type=click.Choice(["Standard_LRS", "Premium_LRS"], case_sensitive=False))
@click.option("--caching-type", type=click.Choice(["none", "readonly", "readwrite"], case_sensitive=False))
@click.option("-u", "--user-name", help="Admin user name (default: current user).")
@click.option("-p", "--password", help="Admin user password.")
@click.option("-k", "--ssh-key", help="SSH public key, or a file holding one.")
@click.option("--generate-ssh-keys", is_flag=True, help="Create ~/.ssh/id_rsa(.pub) if missing and use it.")
@click.option("--subnet", help="ARM id of a virtual network subnet.")
@no_wait_option
def file_server_create(
    client: Client,
    group: str,
    workspace: str,
    name: str,
    config_file: str | None,
    vm_size: str | None,
    disk_count: int | None,
    disk_size: int | None,
    storage_sku: str | None,
    caching_type: str | None,
    user_name: str | None,
    password: str | None,
    ssh_key: str | None,
    generate_ssh_keys: bool,
    subnet: str | None,
    no_wait: bool,
) -> Any:
    """Create a file server (ready at once: it is a directory on the server's host)."""
    path = f"{workspace_path(client, group, workspace)}/fileServers/{segment(name)}"
    ensure_missing(client, path, f'"{name}" already exists in "{group}" resource group under {workspace} workspace.')
    props = load_properties(config_file, None)
    if vm_size:
        props["vmSize"] = vm_size
    if not props.get("vmSize"):
        raise CliError("the following arguments are required: -s/--vm-size (or vmSize in --config-file)", 2)
    disks: dict[str, Any] = dict(props.get("dataDisks") or {})
    for key, value in (
        ("diskCount", disk_count),
        ("diskSizeInGB", disk_size),
        ("storageAccountType", storage_sku),
        ("cachingType", caching_type),
    ):
        if value is not None:
            disks[key] = value
    disks.setdefault("storageAccountType", "Standard_LRS")
    if "diskCount" not in disks or "diskSizeInGB" not in disks:
        raise CliError("the following arguments are required: --disk-count, --disk-size", exit_code=2)
    props["dataDisks"] = disks
    ssh: dict[str, Any] = dict(props.get("sshConfiguration") or {})
    ssh["userAccountSettings"] = user_account(ssh, user_name, password, ssh_key, generate_ssh_keys)
    props["sshConfiguration"] = ssh
    if subnet:
        props["subnet"] = {"id": subnet}
    return client.put(file_server_path(client, group, workspace, name), {"properties": props})


@command(file_server, "show", table=file_server_table)
@group_option
@workspace_option
@click.option("-n", "--name", required=True, help="Name of file server.")
def file_server_show(client: Client, group: str, workspace: str, name: str) -> Any:
    """Show information about a file server."""
    return client.get(file_server_path(client, group, workspace, name))


@command(file_server, "list", table=file_server_table)
@group_option
@workspace_option
def file_server_list(client: Client, group: str, workspace: str) -> Any:
    """List file servers."""
    return client.list(f"{workspace_path(client, group, workspace)}/fileServers")


@command(file_server, "delete")
@group_option
@workspace_option
@click.option("-n", "--name", required=True, help="Name of file server.")
@yes_option
@no_wait_option
def file_server_delete(client: Client, group: str, workspace: str, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete a file server."""
    confirm(yes, f"delete file server '{name}'")
    client.get(file_server_path(client, group, workspace, name))
    client.delete(file_server_path(client, group, workspace, name))
    return None


@click.group("file", help="Commands to work with files generated by the node setup task.")
def cluster_file() -> None:
    pass


cluster.add_command(cluster_file)


@command(cluster_file, "list", flat=False, table=setup_file_table)
@group_option
@workspace_option
@click.option("-c", "--cluster", "name", required=True, help="Name of cluster.")
@click.option(
    "-p", "--path", default=".", show_default=True, help="Relative path of a subfolder of the setup task's output."
)
@click.option("--expiry", type=int, default=60, show_default=True, help="Minutes the download links stay valid.")
def cluster_file_list(client: Client, group: str, workspace: str, name: str, path: str, expiry: int) -> Any:
    """List the node setup task's output files (a folder per node), with download links."""
    items = client.list(
        cluster_path(client, group, workspace, name) + "/listSetupOutputFiles",
        method="POST",
        params={"directory": path, "linkexpiryinminutes": expiry},
    )
    return [
        {
            "name": item["name"],
            "download_url": item.get("downloadUrl"),
            "is_directory": item["fileType"] == "directory",
            "size": None if item["fileType"] == "directory" else item["properties"]["contentLength"],
        }
        for item in items
    ]
