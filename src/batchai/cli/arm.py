"""``batchai group``, ``batchai workspace`` and ``batchai experiment``: as ``az group``/``az batchai``."""

from __future__ import annotations

from typing import Any

import click

from batchai.cli.client import Client, segment
from batchai.cli.common import SpaceSeparated, command, confirm, no_wait_option, yes_option
from batchai.cli.errors import CliError
from batchai.cli.tables import experiment_table, group_table, workspace_table
from batchai.config import DEFAULT_LOCATION

RG_API = "2021-04-01"


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    """``key[=value]`` items as a dict; an empty item (az's ``--tags ''``) adds nothing, so it clears."""
    out = {}
    for tag in tags:
        if not tag:
            continue
        key, _, value = tag.partition("=")
        if not key:
            raise CliError(f"invalid tag '{tag}': use KEY[=VALUE]", exit_code=2)
        out[key] = value
    return out


def tags_option(fn: Any) -> Any:
    return click.option(
        "--tags", cls=SpaceSeparated, help="Space-separated tags: key[=value] [key[=value] ...]. Use '' to clear."
    )(fn)


def group_option(fn: Any) -> Any:
    return click.option(
        "-g",
        "--resource-group",
        "group",
        required=True,
        envvar="AZURE_DEFAULTS_GROUP",
        help="Name of resource group.",
    )(fn)


def workspace_option(fn: Any) -> Any:
    return click.option("-w", "--workspace", required=True, help="Name of workspace.")(fn)


def group_path(client: Client, group: str) -> str:
    return f"{client.sub}/resourceGroups/{segment(group)}"


def workspace_path(client: Client, group: str, workspace: str) -> str:
    return f"{group_path(client, group)}/providers/Microsoft.BatchAI/workspaces/{segment(workspace)}"


# -- az group ----------------------------------------------------------------------------------------
@click.group("group", help="Manage resource groups.")
def group() -> None:
    pass


@command(group, "create", flat=False)
@click.option("-n", "--name", "-g", "--resource-group", "name", required=True, help="Name of the new resource group.")
@click.option(
    "-l", "--location", default=DEFAULT_LOCATION, show_default=True, envvar="AZURE_DEFAULTS_LOCATION", help="Location."
)
@click.option("--managed-by", help="ID of the resource that manages this group.")
@tags_option
def group_create(client: Client, name: str, location: str, managed_by: str | None, tags: tuple[str, ...]) -> Any:
    """Create a new resource group."""
    body: dict[str, Any] = {"location": location, "tags": parse_tags(tags)}
    if managed_by:
        body["managedBy"] = managed_by
    return client.put(group_path(client, name), body, api_version=RG_API)


@command(group, "show", flat=False)
@click.option("-n", "--name", "-g", "--resource-group", "name", required=True, help="Name of resource group.")
def group_show(client: Client, name: str) -> Any:
    """Get a resource group."""
    return client.get(group_path(client, name), api_version=RG_API)


@command(group, "exists", flat=False)
@click.option("-n", "--name", "-g", "--resource-group", "name", required=True, help="Name of resource group.")
def group_exists(client: Client, name: str) -> Any:
    """Check if a resource group exists."""
    return client.get(group_path(client, name), api_version=RG_API, ok_missing=True) is not None


@command(group, "list", flat=False, table=group_table)
@click.option("--tag", "--tags", "tags", cls=SpaceSeparated, help="A tag to filter by: key[=value].")
def group_list(client: Client, tags: tuple[str, ...]) -> Any:
    """List resource groups."""
    wanted = parse_tags(tags)
    groups = client.list(f"{client.sub}/resourceGroups", api_version=RG_API)
    return [
        g
        for g in groups
        if all(g.get("tags", {}).get(k) == v or (v == "" and k in g.get("tags", {})) for k, v in wanted.items())
    ]


@command(group, "update", flat=False)
@click.option("-n", "--name", "-g", "--resource-group", "name", required=True, help="Name of resource group.")
@tags_option
def group_update(client: Client, name: str, tags: tuple[str, ...]) -> Any:
    """Update a resource group's tags."""
    return client.patch(group_path(client, name), {"tags": parse_tags(tags)}, api_version=RG_API)


@command(group, "delete")
@click.option("-n", "--name", "-g", "--resource-group", "name", required=True, help="Name of resource group.")
@yes_option
@no_wait_option
def group_delete(client: Client, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete a resource group and everything in it."""
    confirm(yes, f"delete resource group '{name}' and all its resources")
    client.get(group_path(client, name), api_version=RG_API)
    client.delete(group_path(client, name), api_version=RG_API)
    return None


# -- az provider -------------------------------------------------------------------------------------
@click.group("provider", help="Manage resource providers (the ones this server serves are always registered).")
def provider() -> None:
    pass


def namespace_option(fn: Any) -> Any:
    return click.option("-n", "--namespace", required=True, help="The resource namespace, e.g. Microsoft.BatchAI.")(fn)


def expand_option(fn: Any) -> Any:
    return click.option("--expand", help="Properties to expand (accepted; there is nothing more to show).")(fn)


@command(provider, "register", flat=False)
@namespace_option
@click.option("--wait", is_flag=True, help="Wait for the registration to finish (it finishes at once).")
@click.option("--consent-to-permissions", is_flag=True, help="Accepted; no permissions are needed.")
def provider_register(client: Client, namespace: str, wait: bool, consent_to_permissions: bool) -> Any:
    """Register a provider (a no-op: the namespaces this server serves are always registered)."""
    client.post(f"{client.sub}/providers/{namespace}/register", api_version=RG_API)
    return None


@command(provider, "show", flat=False)
@namespace_option
@expand_option
def provider_show(client: Client, namespace: str, expand: str | None) -> Any:
    """Get information about a resource provider."""
    return client.get(f"{client.sub}/providers/{namespace}", api_version=RG_API)


@command(provider, "list", flat=False)
@expand_option
def provider_list(client: Client, expand: str | None) -> Any:
    """List the resource providers of the subscription."""
    return client.list(f"{client.sub}/providers", api_version=RG_API)


# -- az batchai workspace ----------------------------------------------------------------------------
@click.group("workspace", help="Commands to manage workspaces.")
def workspace() -> None:
    pass


@command(workspace, "create", table=workspace_table)
@group_option
@click.option("-n", "--name", "-w", "--workspace", "name", required=True, help="Name of workspace.")
@click.option("-l", "--location", envvar="AZURE_DEFAULTS_LOCATION", help="Location; defaults to the resource group's.")
@tags_option
def workspace_create(client: Client, group: str, name: str, location: str | None, tags: tuple[str, ...]) -> Any:
    """Create a workspace."""
    if not location:
        location = client.get(group_path(client, group), api_version=RG_API)["location"]
    return client.put(workspace_path(client, group, name), {"location": location, "tags": parse_tags(tags)})


@command(workspace, "show", table=workspace_table)
@group_option
@click.option("-n", "--name", "-w", "--workspace", "name", required=True, help="Name of workspace.")
def workspace_show(client: Client, group: str, name: str) -> Any:
    """Show information about a workspace."""
    return client.get(workspace_path(client, group, name))


@command(workspace, "list", table=workspace_table)
@click.option("-g", "--resource-group", "group", envvar="AZURE_DEFAULTS_GROUP", help="Name of resource group.")
def workspace_list(client: Client, group: str | None) -> Any:
    """List workspaces."""
    if group:
        return client.list(f"{group_path(client, group)}/providers/Microsoft.BatchAI/workspaces")
    return client.list(f"{client.sub}/providers/Microsoft.BatchAI/workspaces")


@command(workspace, "delete")
@group_option
@click.option("-n", "--name", "-w", "--workspace", "name", required=True, help="Name of workspace.")
@yes_option
@no_wait_option
def workspace_delete(client: Client, group: str, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete a workspace with its clusters, file servers, experiments and jobs."""
    confirm(yes, f"delete workspace '{name}' with everything in it")
    client.get(workspace_path(client, group, name))
    client.delete(workspace_path(client, group, name))
    return None


# -- az batchai experiment ---------------------------------------------------------------------------
@click.group("experiment", help="Commands to manage experiments.")
def experiment() -> None:
    pass


def experiment_path(client: Client, group: str, workspace: str, name: str) -> str:
    return f"{workspace_path(client, group, workspace)}/experiments/{segment(name)}"


@command(experiment, "create", table=experiment_table)
@group_option
@workspace_option
@click.option("-n", "--name", "-e", "--experiment", "name", required=True, help="Name of experiment.")
def experiment_create(client: Client, group: str, workspace: str, name: str) -> Any:
    """Create an experiment."""
    return client.put(experiment_path(client, group, workspace, name))


@command(experiment, "show", table=experiment_table)
@group_option
@workspace_option
@click.option("-n", "--name", "-e", "--experiment", "name", required=True, help="Name of experiment.")
def experiment_show(client: Client, group: str, workspace: str, name: str) -> Any:
    """Show information about an experiment."""
    return client.get(experiment_path(client, group, workspace, name))


@command(experiment, "list", table=experiment_table)
@group_option
@workspace_option
def experiment_list(client: Client, group: str, workspace: str) -> Any:
    """List experiments."""
    return client.list(f"{workspace_path(client, group, workspace)}/experiments")


@command(experiment, "delete")
@group_option
@workspace_option
@click.option("-n", "--name", "-e", "--experiment", "name", required=True, help="Name of experiment.")
@yes_option
@no_wait_option
def experiment_delete(client: Client, group: str, workspace: str, name: str, yes: bool, no_wait: bool) -> Any:
    """Delete an experiment and its jobs."""
    confirm(yes, f"delete experiment '{name}' and its jobs")
    client.get(experiment_path(client, group, workspace, name))
    client.delete(experiment_path(client, group, workspace, name))
    return None


# -- az batchai list-usages ------------------------------------------------------------------------------
def list_usages(client: Client, location: str) -> Any:
    """The usages of ``location``: the nodes of all clusters against the cores of the server's host."""
    return client.list(f"{client.sub}/providers/Microsoft.BatchAI/locations/{location}/usages")
