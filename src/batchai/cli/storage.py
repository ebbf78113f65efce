"""``batchai storage``: accounts, shares, directories, files, containers and blobs (as ``az storage``).

Accounts are ARM resources (``Microsoft.Storage/storageAccounts``); everything else goes to the server's
data plane, ``/storage/{account}/shares/...`` and ``/storage/{account}/containers/...``. Uploads and
downloads stream in 1 MiB chunks, with a progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import click
import httpx
from rich.progress import Progress

from batchai.cli.arm import RG_API, group_option, group_path, parse_tags, tags_option
from batchai.cli.client import Client, error_message, segment
from batchai.cli.common import SpaceSeparated, command, confirm, warn, yes_option
from batchai.cli.errors import CliError
from batchai.cli.transfer import CHUNK, download, progress_bar
from batchai.storage.base import KINDS, SKUS, InvalidPath, shown, volume_path

STORAGE_API = "2023-01-01"
# 404 codes that mean "the share, container, file or directory is not there" (not a missing account).
VOLUME_MISSING = frozenset({"ShareNotFound", "ContainerNotFound"})
PATH_MISSING = frozenset({"ResourceNotFound"})


@click.group("storage", help="Manage storage accounts, file shares and blob containers.")
def storage() -> None:
    pass


# -- the data plane over HTTP --------------------------------------------------------------------------
@dataclass(frozen=True)
class Volume:
    """A share or a container of an account, as the server's data-plane URLs name it."""

    account: str
    collection: str  # "shares" or "containers"
    name: str

    def __post_init__(self) -> None:
        if "/" in self.name:  # (a path goes in the blob's or file's name, or a batch's --destination-path)
            kind = "share" if self.is_share else "container"
            raise CliError(
                f"the {kind} name '{self.name}' cannot contain '/' (a folder goes in the blob's or file's path)",
                exit_code=2,
            )

    @property
    def is_share(self) -> bool:
        return self.collection == "shares"

    @property
    def label(self) -> str:
        return f"{'file share' if self.is_share else 'container'} '{self.name}'"

    @property
    def url(self) -> str:
        return f"/storage/{segment(self.account)}/{self.collection}/{segment(self.name)}"

    @property
    def listing(self) -> str:
        return f"{self.url}/{'files' if self.is_share else 'blobs'}"

    def item(self, path: str) -> str:
        return f"{self.listing}/{quote(path, safe='/')}"

    def directory(self, path: str) -> str:
        return f"{self.url}/directories/{quote(path, safe='/')}"


def clean_path(path: str | None, flag: str, *, allow_root: bool = True) -> str:
    """A path inside a share or container (``a//b/`` -> ``a/b``), refused here as the server would refuse it
    (``..``, absolute, ``\\``, names too long or reserved; ``storage.base.volume_path``)."""
    try:
        rel = volume_path(path or "")
    except InvalidPath as exc:
        raise CliError(f"argument {flag}: {exc.message}", exit_code=2) from None
    if not rel and not allow_root:
        raise CliError(f"argument {flag}: a path inside the share or container is required", exit_code=2)
    return rel


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def send(client: Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    with client.transport_errors():
        return client.http.request(method, url, **kwargs)


def error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def is_missing(response: httpx.Response, codes: frozenset[str]) -> bool:
    return response.status_code == 404 and error_code(response) in codes


def body(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise CliError(error_message(response))
    return response.json() if response.content else None


def list_entries(
    client: Client,
    vol: Volume,
    path: str = "",
    *,
    recursive: bool = False,
    missing: frozenset[str] = PATH_MISSING,
    limit: int | None = None,
) -> list[dict[str, Any]] | None:
    """The entries under directory ``path`` (all pages), or None when it (or a code in ``missing``) is absent."""
    params = {"path": path, "recursive": "true" if recursive else "false"}
    if limit:
        params["maxresults"] = str(limit)
    response = send(client, "GET", vol.listing, params=params)
    if is_missing(response, missing):
        return None
    page = body(response)
    items: list[dict[str, Any]] = list(page.get("value", []))
    while page.get("nextLink") and (limit is None or len(items) < limit):
        page = client.get(page["nextLink"], api_version=None)
        items.extend(page.get("value", []))
    return items


def is_directory(client: Client, vol: Volume, path: str, missing: frozenset[str] = PATH_MISSING) -> bool:
    return list_entries(client, vol, path, missing=missing, limit=1) is not None


def find_entry(client: Client, vol: Volume, path: str, missing: frozenset[str] = PATH_MISSING) -> dict[str, Any] | None:
    """The entry at ``path`` (a file or a directory), from its properties; None if absent."""
    response = send(client, "GET", vol.item(path), params={"comp": "properties"})
    if is_missing(response, missing):
        return None
    entry: dict[str, Any] = body(response)
    return entry


def check_volume(client: Client, vol: Volume) -> None:
    body(send(client, "GET", vol.url))


def volume_exists(client: Client, vol: Volume) -> bool:
    response = send(client, "GET", vol.url)
    if is_missing(response, VOLUME_MISSING):
        return False
    body(response)
    return True


def properties(entry: dict[str, Any]) -> dict[str, Any]:
    return {"contentLength": entry.get("contentLength"), "lastModified": entry.get("lastModified")}


# -- streaming -------------------------------------------------------------------------------------------
def upload_file(client: Client, progress: Progress, vol: Volume, source: Path, remote: str) -> dict[str, Any]:
    """Stream ``source`` into ``remote`` in 1 MiB chunks; the server's entry for the new file."""
    size = source.stat().st_size
    task = progress.add_task(remote, total=size)
    try:
        with source.open("rb") as handle:

            def chunks() -> Iterator[bytes]:
                remaining = size  # what was announced in Content-Length, even if the file grows meanwhile
                while remaining > 0:
                    chunk = handle.read(min(CHUNK, remaining))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    progress.advance(task, len(chunk))
                    yield chunk

            headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            response = send(client, "PUT", vol.item(remote), content=chunks(), headers=headers)
    finally:
        progress.remove_task(task)
    entry: dict[str, Any] = body(response)
    return entry


def download_file(client: Client, progress: Progress, vol: Volume, remote: str, dest: Path) -> int:
    return download(client, progress, vol.item(remote), dest, remote)


def local_files(source: Path, pattern: str | None) -> list[tuple[Path, str]]:
    """Files under ``source`` as (path, relative posix path), filtered like az: fnmatch on the relative path."""
    if not source.is_dir():
        raise CliError(f"argument -s/--source: '{source}' is not a directory", exit_code=2)
    wanted = pattern.lstrip("/") if pattern else None
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(source).as_posix()
            if (wanted is None or fnmatch.fnmatch(rel, wanted)) and path.is_file():
                found.append((path, rel))
    return found


def servable(remote: str) -> bool:
    """Whether the server serves a file of that name (one with a ``\\`` can be made by a job on a mount, not
    fetched)."""
    try:
        volume_path(remote, allow_root=False)
    except InvalidPath:
        return False
    return True


def local_target(directory: Path, remote: str) -> Path:
    """Where a downloaded ``remote`` goes under ``directory``; never outside it (not even through a link)."""
    rel = clean_path(remote, "name", allow_root=False)
    target = directory / rel
    base = os.path.join(os.path.realpath(directory), "")
    if not os.path.realpath(target).startswith(base):
        raise CliError(f"refusing to write '{remote}' outside {directory}")
    return target


def download_dest(dest: str | None, remote: str) -> Path:
    """az's ``--dest``/``--file``: a file path, a directory (keeping the name), or by default the current one."""
    name = remote.rsplit("/", 1)[-1]
    if not dest:
        return Path(name)
    path = Path(dest).expanduser()
    return path / name if path.is_dir() or dest.endswith(("/", os.sep)) else path


def source_file(source: str, flag: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        raise CliError(f"argument {flag}: '{source}' is not a file", exit_code=2)
    return path


def public_url(client: Client, vol: Volume, path: str) -> str:
    return f"{client.conn.endpoint}{vol.item(path)}"


# -- options ---------------------------------------------------------------------------------------------
def account_from(account_name: str | None, connection_string: str | None) -> str:
    if account_name:
        return account_name
    for part in (connection_string or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "accountname" and value.strip():
            return value.strip()
    raise CliError(
        "the storage account is missing: give --account-name, set AZURE_STORAGE_ACCOUNT, or give a "
        "--connection-string with AccountName=",
        exit_code=2,
    )


def account_options(fn: Callable[..., Any], *, by_url: bool = False) -> Callable[..., Any]:
    """az's storage credentials options; only the account name matters here, and ``fn`` gets it as ``account``
    (``by_url``: None when none is given, for a command whose share or container may be a URL naming it)."""

    @functools.wraps(fn)
    def wrapper(
        client: Client,
        *,
        account_name: str | None,
        account_key: str | None,
        connection_string: str | None,
        sas_token: str | None,
        auth_mode: str | None,
        **kwargs: Any,
    ) -> Any:
        if by_url and not account_name and not connection_string:
            return fn(client, account=None, **kwargs)
        return fn(client, account=account_from(account_name, connection_string), **kwargs)

    options = (
        click.option(
            "--account-name",
            envvar="AZURE_STORAGE_ACCOUNT",
            help="Storage account name. Environment variable: AZURE_STORAGE_ACCOUNT.",
        ),
        click.option("--account-key", envvar="AZURE_STORAGE_KEY", help="Storage account key (accepted, not needed)."),
        click.option(
            "--connection-string",
            envvar="AZURE_STORAGE_CONNECTION_STRING",
            help="Storage account connection string; its AccountName is used.",
        ),
        click.option("--sas-token", envvar="AZURE_STORAGE_SAS_TOKEN", help="A SAS token (accepted, not needed)."),
        click.option("--auth-mode", type=click.Choice(["key", "login"]), help="Accepted for az compatibility."),
    )
    result: Callable[..., Any] = wrapper
    for option in reversed(options):  # so that --account-name is listed first
        result = option(result)
    return result


def account_or_url_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    return account_options(fn, by_url=True)


def batch_volume(account: str | None, value: str, collection: str, flag: str) -> tuple[Volume, str]:
    """The share or container a batch command's ``flag`` names, and the folder in it, as az takes them: a name,
    ``name/folder``, or a URL (``https://<account>.blob.core.windows.net/<name>[/<folder>]``, the ``file``
    one for shares, or this server's own ``.../storage/<account>/<containers|shares>/<name>``)."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        segments = [unquote(p) for p in parts.path.split("/") if p]
        if segments[:1] == ["storage"] and len(segments) >= 4 and segments[2] in ("shares", "containers"):
            if segments[2] != collection:
                kinds = {"shares": "file share", "containers": "container"}
                raise CliError(f"argument {flag}: the URL names a {kinds[segments[2]]}, not a {kinds[collection]}", 2)
            named, segments = segments[1], segments[3:]
            if segments[1:2] in (["blobs"], ["files"]):
                del segments[1]  # (a link to the items: the folder follows)
        else:
            named = (parts.hostname or "").split(".")[0]
        if account and named != account:
            raise CliError(f"argument {flag}: the URL is of account '{named}', not '{account}'", exit_code=2)
        account, value = named, "/".join(segments)
    if not account:
        account = account_from(None, None)  # (the error that says how to give it)
    name, _, folder = value.strip("/").partition("/")
    if not name:
        raise CliError(f"argument {flag}: the {'share' if collection == 'shares' else 'container'} is missing", 2)
    return Volume(account, collection, name), clean_path(folder, flag)


def share_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-s", "--share-name", "share", required=True, help="The file share name.")(fn)


def container_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-c", "--container-name", "container", required=True, help="The container name.")(fn)


def pattern_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--pattern", help="Only files whose relative path matches this glob (fnmatch).")(fn)


def dryrun_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--dryrun", is_flag=True, help="Show what would be transferred, transfer nothing.")(fn)


# -- az storage account ----------------------------------------------------------------------------------
@storage.group("account", help="Manage storage accounts.")
def account() -> None:
    pass


def account_path(client: Client, group: str, name: str) -> str:
    return f"{group_path(client, group)}/providers/Microsoft.Storage/storageAccounts/{segment(name)}"


@command(account, "create")
@click.option("-n", "--name", required=True, help="The storage account name (3-24 lowercase letters and digits).")
@group_option
@click.option("-l", "--location", help="Location; defaults to the resource group's.")
@click.option(
    "--sku", type=click.Choice(SKUS), default="Standard_LRS", show_default=True, help="The storage account SKU."
)
@click.option(
    "--kind", type=click.Choice(KINDS), default="StorageV2", show_default=True, help="The type of storage account."
)
@click.option("--https-only", hidden=True, help="Accepted for az compatibility.")
@click.option("--access-tier", hidden=True, help="Accepted for az compatibility.")
@tags_option
def account_create(
    client: Client,
    name: str,
    group: str,
    location: str | None,
    sku: str,
    kind: str,
    https_only: str | None,
    access_tier: str | None,
    tags: tuple[str, ...],
) -> Any:
    """Create a storage account."""
    if not location:
        location = client.get(group_path(client, group), api_version=RG_API)["location"]
    request = {"location": location, "sku": {"name": sku}, "kind": kind, "tags": parse_tags(tags)}
    return client.put(account_path(client, group, name), request, api_version=STORAGE_API)


@command(account, "show")
@click.option("-n", "--name", required=True, help="The storage account name.")
@group_option
def account_show(client: Client, name: str, group: str) -> Any:
    """Show storage account properties."""
    return client.get(account_path(client, group, name), api_version=STORAGE_API)


@command(account, "list")
@click.option("-g", "--resource-group", "group", help="Name of resource group.")
def account_list(client: Client, group: str | None) -> Any:
    """List storage accounts of a resource group, or of the subscription."""
    if group:
        return client.list(
            f"{group_path(client, group)}/providers/Microsoft.Storage/storageAccounts", api_version=STORAGE_API
        )
    return client.list(f"{client.sub}/providers/Microsoft.Storage/storageAccounts", api_version=STORAGE_API)


@command(account, "delete")
@click.option("-n", "--name", required=True, help="The storage account name.")
@group_option
@yes_option
def account_delete(client: Client, name: str, group: str, yes: bool) -> Any:
    """Delete a storage account with all its shares, containers and files."""
    confirm(yes, f"delete storage account '{name}' and all its data")
    client.delete(account_path(client, group, name), api_version=STORAGE_API)
    return None


@account.group("keys", help="Manage storage account keys.")
def account_keys() -> None:
    pass


def list_keys(client: Client, name: str, group: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = client.post(account_path(client, group, name) + "/listKeys", api_version=STORAGE_API)[
        "keys"
    ]
    return keys


@command(account_keys, "list", flat=False)
@click.option("-n", "--account-name", "name", required=True, help="The storage account name.")
@group_option
def account_keys_list(client: Client, name: str, group: str) -> Any:
    """List the access keys of a storage account."""
    return list_keys(client, name, group)


@command(account, "show-connection-string", flat=False)
@click.option("-n", "--name", required=True, help="The storage account name.")
@group_option
@click.option("--key", "key_name", type=click.Choice(["primary", "secondary"]), default="primary", show_default=True)
def account_connection_string(client: Client, name: str, group: str, key_name: str) -> Any:
    """Show the connection string of a storage account."""
    key = list_keys(client, name, group)[0 if key_name == "primary" else 1]["value"]
    return {
        "connectionString": "DefaultEndpointsProtocol=https;EndpointSuffix=core.windows.net;"
        f"AccountName={name};AccountKey={key}"
    }


# -- shares and containers -------------------------------------------------------------------------------
def create_volume(client: Client, vol: Volume, fail_on_exist: bool) -> dict[str, Any]:
    result = body(send(client, "PUT", vol.url))
    if fail_on_exist and not result.get("created"):
        raise CliError(f"The specified {vol.label} already exists.")
    return {"created": bool(result.get("created"))}


def delete_volume(client: Client, vol: Volume, fail_not_exist: bool) -> dict[str, Any]:
    result = body(send(client, "DELETE", vol.url))
    if fail_not_exist and not result.get("deleted"):
        raise CliError(f"The specified {vol.label} does not exist.")
    return {"deleted": bool(result.get("deleted"))}


def list_volumes(client: Client, account: str, collection: str, prefix: str | None) -> list[dict[str, Any]]:
    items = client.list(f"/storage/{segment(account)}/{collection}", api_version=None)
    return [{"name": item["name"]} for item in items if not prefix or str(item["name"]).startswith(prefix)]


@dataclass(frozen=True)
class VolumeNouns:
    """How az's help names one kind of volume."""

    collection: str  # shares, containers
    noun: str  # share, container
    full: str  # file share, blob container
    contents: str  # files, blobs


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def volume_commands(group: click.Group, nouns: VolumeNouns, accepted: Decorator) -> None:
    """``create``, ``delete``, ``exists``, ``show`` and ``list`` of shares or containers, which az has alike;
    ``accepted``: the create options az has for this kind, taken and ignored."""

    @command(group, "create", flat=False, help=f"Create a {nouns.full} in a storage account.")
    @click.option("-n", "--name", required=True, help=f"The {nouns.noun} name.")
    @click.option("--fail-on-exist", is_flag=True, help=f"Fail if the {nouns.noun} exists already.")
    @click.option("--metadata", cls=SpaceSeparated, hidden=True, help="Accepted for az compatibility.")
    @accepted
    @account_options
    def create(client: Client, account: str, name: str, fail_on_exist: bool, **_: Any) -> Any:
        return create_volume(client, Volume(account, nouns.collection, name), fail_on_exist)

    @command(group, "delete", flat=False, help=f"Delete a {nouns.noun} and its {nouns.contents}.")
    @click.option("-n", "--name", required=True, help=f"The {nouns.noun} name.")
    @click.option("--fail-not-exist", is_flag=True, help=f"Fail if the {nouns.noun} does not exist.")
    @account_options
    def delete(client: Client, account: str, name: str, fail_not_exist: bool) -> Any:
        return delete_volume(client, Volume(account, nouns.collection, name), fail_not_exist)

    @command(group, "exists", flat=False, help=f"Check for the existence of a {nouns.noun}.")
    @click.option("-n", "--name", required=True, help=f"The {nouns.noun} name.")
    @account_options
    def exists(client: Client, account: str, name: str) -> Any:
        return {"exists": volume_exists(client, Volume(account, nouns.collection, name))}

    @command(group, "show", flat=False, help=f"Show a {nouns.noun}.")
    @click.option("-n", "--name", required=True, help=f"The {nouns.noun} name.")
    @account_options
    def show(client: Client, account: str, name: str) -> Any:
        return body(send(client, "GET", Volume(account, nouns.collection, name).url))

    @command(group, "list", flat=False, help=f"List the {nouns.collection} of a storage account.")
    @click.option("--prefix", help=f"Only {nouns.collection} whose names begin with this prefix.")
    @account_options
    def list_(client: Client, account: str, prefix: str | None) -> Any:
        return list_volumes(client, account, nouns.collection, prefix)


@storage.group("share", help="Manage file shares.")
def share() -> None:
    pass


@storage.group("container", help="Manage blob containers.")
def container() -> None:
    pass


volume_commands(
    share,
    VolumeNouns("shares", "share", "file share", "files"),
    click.option("--quota", type=int, help="Maximum size of the share in GB (accepted, not enforced)."),
)
volume_commands(
    container,
    VolumeNouns("containers", "container", "blob container", "blobs"),
    click.option(
        "--public-access",
        type=click.Choice(["off", "blob", "container"]),
        hidden=True,
        help="Accepted for az compatibility.",
    ),
)


# -- az storage directory ---------------------------------------------------------------------------------
@storage.group("directory", help="Manage directories of file shares.")
def directory() -> None:
    pass


def file_item(entry: dict[str, Any]) -> dict[str, Any]:
    """A share entry as ``az storage file list`` shows it: its own name, ``file`` or ``dir``."""
    return {
        "name": str(entry["name"]).rsplit("/", 1)[-1],
        "type": "dir" if entry.get("type") == "directory" else "file",
        "properties": properties(entry),
    }


def file_rows(items: Any) -> Any:
    """``-o table`` of files and directories, as az shows them (a directory's name ends in '/')."""
    if not isinstance(items, list):
        return items
    rows = [
        {
            "Name": i["name"] + "/" if i["type"] == "dir" else i["name"],
            "Content Length": " " if i["type"] == "dir" else i["properties"]["contentLength"],
            "Type": i["type"],
            "Last Modified": i["properties"]["lastModified"] or " ",
        }
        for i in items
    ]
    return sorted(rows, key=lambda row: str(row["Name"]))


@command(directory, "create", flat=False)
@share_option
@click.option("-n", "--name", required=True, help="The directory path within the share.")
@click.option("--fail-on-exist", is_flag=True, help="Fail if the directory exists already.")
@click.option("--metadata", cls=SpaceSeparated, hidden=True, help="Accepted for az compatibility.")
@account_options
def directory_create(
    client: Client, account: str, share: str, name: str, fail_on_exist: bool, metadata: tuple[str, ...]
) -> Any:
    """Create a directory (and its parents) in a file share."""
    vol = Volume(account, "shares", share)
    path = clean_path(name, "-n/--name", allow_root=False)
    created = bool(body(send(client, "PUT", vol.directory(path))).get("created"))
    if fail_on_exist and not created:
        raise CliError(f"The specified directory '{path}' already exists in the {vol.label}.")
    return {"created": created}


@command(directory, "delete", flat=False)
@share_option
@click.option("-n", "--name", required=True, help="The directory path within the share.")
@click.option("--fail-not-exist", is_flag=True, help="Fail if the directory does not exist.")
@account_options
def directory_delete(client: Client, account: str, share: str, name: str, fail_not_exist: bool) -> Any:
    """Delete an empty directory of a file share."""
    vol = Volume(account, "shares", share)
    path = clean_path(name, "-n/--name", allow_root=False)
    response = send(client, "DELETE", vol.directory(path))
    deleted = False if is_missing(response, PATH_MISSING) else bool(body(response).get("deleted"))
    if fail_not_exist and not deleted:
        raise CliError(f"The specified directory '{path}' does not exist in the {vol.label}.")
    return {"deleted": deleted}


@command(directory, "exists", flat=False)
@share_option
@click.option("-n", "--name", required=True, help="The directory path within the share.")
@account_options
def directory_exists(client: Client, account: str, share: str, name: str) -> Any:
    """Check for the existence of a directory in a file share."""
    path = clean_path(name, "-n/--name", allow_root=False)
    return {"exists": is_directory(client, Volume(account, "shares", share), path, PATH_MISSING | VOLUME_MISSING)}


@command(directory, "show", flat=False)
@share_option
@click.option("-n", "--name", required=True, help="The directory path within the share.")
@account_options
def directory_show(client: Client, account: str, share: str, name: str) -> Any:
    """Show a directory of a file share."""
    vol = Volume(account, "shares", share)
    path = clean_path(name, "-n/--name", allow_root=False)
    entry = find_entry(client, vol, path)
    if entry is None or entry.get("type") != "directory":
        raise CliError(f"(ResourceNotFound) The directory '{path}' was not found in the {vol.label}.")
    return {"name": path, "properties": {"lastModified": entry.get("lastModified")}}


@command(directory, "list", flat=False, table=file_rows)
@share_option
@click.option("-n", "--name", help="The directory to list (default: the share's root).")
@account_options
def directory_list(client: Client, account: str, share: str, name: str | None) -> Any:
    """List the directories in a directory of a file share."""
    vol = Volume(account, "shares", share)
    path = clean_path(name, "-n/--name")
    entries = list_entries(client, vol, path)
    if entries is None:
        raise CliError(f"(ResourceNotFound) The directory '{path}' was not found in the {vol.label}.")
    return [file_item(e) for e in entries if e.get("type") == "directory"]


# -- az storage file --------------------------------------------------------------------------------------
@storage.group("file", help="Manage files of file shares.")
def file() -> None:
    pass


def file_path_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-p", "--path", required=True, help="The path of the file within the share.")(fn)


def missing_file(vol: Volume, path: str) -> CliError:
    return CliError(f"(ResourceNotFound) The file '{path}' was not found in the {vol.label}.")


@command(file, "upload", flat=False)
@share_option
@click.option("--source", required=True, help="Path of the local file to upload.")
@click.option(
    "-p",
    "--path",
    help="The file's path in the share, or a directory to upload into (keeping the name); default: the share's root.",
)
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_options
def file_upload(
    client: Client, account: str, share: str, source: str, path: str | None, max_connections: int | None
) -> Any:
    """Upload a file to a file share (streamed)."""
    vol = Volume(account, "shares", share)
    local = source_file(source, "--source")
    target = clean_path(path, "-p/--path")
    if not target or path is None or path.endswith("/"):
        check_volume(client, vol)
        target = remote_name(local, join(target, local.name))
    elif is_directory(client, vol, target):  # also says which share or account is missing
        target = remote_name(local, join(target, local.name))
    with progress_bar() as progress:
        entry = upload_file(client, progress, vol, local, target)
    return {"name": entry["name"], **properties(entry)}


@command(file, "download", flat=False)
@share_option
@file_path_option
@click.option("--dest", help="Local file or directory to write to; default: the file's name, here.")
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_options
def file_download(
    client: Client, account: str, share: str, path: str, dest: str | None, max_connections: int | None
) -> Any:
    """Download a file of a file share (streamed)."""
    vol = Volume(account, "shares", share)
    remote = clean_path(path, "-p/--path", allow_root=False)
    target = download_dest(dest, remote)
    with progress_bar() as progress:
        size = download_file(client, progress, vol, remote, target)
    return {"name": remote, "destination": str(target), "contentLength": size}


@command(file, "list", flat=False, table=file_rows)
@share_option
@click.option("-p", "--path", help="The directory to list (default: the share's root).")
@click.option("--exclude-dir", is_flag=True, help="List only files.")
@click.option("--num-results", type=int, help="The most entries to show.")
@account_options
def file_list(
    client: Client, account: str, share: str, path: str | None, exclude_dir: bool, num_results: int | None
) -> Any:
    """List the files and directories in a directory of a file share."""
    vol = Volume(account, "shares", share)
    rel = clean_path(path, "-p/--path")
    entries = list_entries(client, vol, rel)
    if entries is None:
        raise CliError(f"(ResourceNotFound) The directory '{rel}' was not found in the {vol.label}.")
    items = [file_item(e) for e in entries if not (exclude_dir and e.get("type") == "directory")]
    return items[:num_results] if num_results is not None else items


@command(file, "delete", flat=False)
@share_option
@file_path_option
@account_options
def file_delete(client: Client, account: str, share: str, path: str) -> Any:
    """Delete a file of a file share."""
    vol = Volume(account, "shares", share)
    remote = clean_path(path, "-p/--path", allow_root=False)
    return {"deleted": bool(body(send(client, "DELETE", vol.item(remote))).get("deleted"))}


@command(file, "exists", flat=False)
@share_option
@file_path_option
@account_options
def file_exists(client: Client, account: str, share: str, path: str) -> Any:
    """Check for the existence of a file."""
    vol = Volume(account, "shares", share)
    remote = clean_path(path, "-p/--path", allow_root=False)
    entry = find_entry(client, vol, remote, PATH_MISSING | VOLUME_MISSING)
    return {"exists": entry is not None and entry.get("type") == "file"}


@command(file, "show", flat=False)
@share_option
@file_path_option
@account_options
def file_show(client: Client, account: str, share: str, path: str) -> Any:
    """Show the properties of a file."""
    vol = Volume(account, "shares", share)
    remote = clean_path(path, "-p/--path", allow_root=False)
    entry = find_entry(client, vol, remote)
    if entry is None or entry.get("type") != "file":
        raise missing_file(vol, remote)
    return {"name": remote, "type": "file", "properties": properties(entry)}


@command(file, "upload-batch", flat=False)
@click.option(
    "-d", "--destination", "share", required=True, help="The file share to upload to (name, share/folder or URL)."
)
@click.option("-s", "--source", required=True, help="The local directory to upload.")
@click.option("--destination-path", help="The directory in the share to upload into.")
@pattern_option
@dryrun_option
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_or_url_options
def file_upload_batch(
    client: Client,
    account: str | None,
    share: str,
    source: str,
    destination_path: str | None,
    pattern: str | None,
    dryrun: bool,
    max_connections: int | None,
) -> Any:
    """Upload the files of a local directory to a file share (recursively)."""
    vol, folder = batch_volume(account, share, "shares", "--destination")
    prefix = join(folder, clean_path(destination_path, "--destination-path"))
    return upload_batch(client, vol, Path(source).expanduser(), prefix, pattern, dryrun, "File")


@command(file, "download-batch", flat=False)
@click.option(
    "-s", "--source", "share", required=True, help="The file share to download from (name, share/folder or URL)."
)
@click.option("-d", "--destination", required=True, help="The local directory to download into.")
@pattern_option
@dryrun_option
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_or_url_options
def file_download_batch(
    client: Client,
    account: str | None,
    share: str,
    destination: str,
    pattern: str | None,
    dryrun: bool,
    max_connections: int | None,
) -> Any:
    """Download the files of a file share to a local directory (recursively)."""
    vol, folder = batch_volume(account, share, "shares", "--source")
    return download_batch(client, vol, folder, Path(destination).expanduser(), pattern, dryrun)


def remote_name(local: Path, remote: str) -> str:
    """The name ``local`` is uploaded as, if the server would take it; else an error naming the file."""
    try:
        return volume_path(remote, allow_root=False)
    except InvalidPath as exc:
        raise CliError(f"cannot upload '{shown(str(local))}' (nothing was uploaded): {exc.message}") from None


def upload_batch(
    client: Client,
    vol: Volume,
    source: Path,
    destination_path: str | None,
    pattern: str | None,
    dryrun: bool,
    label: str,
) -> list[dict[str, Any]]:
    prefix = clean_path(destination_path, "--destination-path")
    files = [(path, remote_name(path, join(prefix, rel))) for path, rel in local_files(source, pattern)]
    check_volume(client, vol)
    if dryrun:
        return [{label: public_url(client, vol, remote), "Source": str(path)} for path, remote in files]
    out = []
    with progress_bar() as progress:
        overall = progress.add_task(f"{len(files)} files", total=sum(p.stat().st_size for p, _ in files))
        for path, remote in files:
            entry = upload_file(client, progress, vol, path, remote)
            progress.advance(overall, int(entry.get("contentLength") or 0))
            out.append({label: public_url(client, vol, entry["name"]), "Last Modified": entry.get("lastModified")})
    return out


def download_batch(
    client: Client, vol: Volume, folder: str, destination: Path, pattern: str | None, dryrun: bool
) -> list[str]:
    """The files under ``folder`` (all: ""), named as in the share or container, below ``destination``."""
    entries = list_entries(client, vol, folder, recursive=True)
    if entries is None and folder:
        raise CliError(f"(PathNotFound) The folder '{folder}' was not found in the {vol.label}.")
    names = [
        str(e["name"])
        for e in entries or []
        if e.get("type") == "file" and (not pattern or fnmatch.fnmatch(str(e["name"]), pattern))
    ]
    for name in [n for n in names if not servable(n)]:
        warn(f"skipped '{shown(name)}': a name that cannot be downloaded (a '\\' in it)")
        names.remove(name)
    targets = [(name, local_target(destination, name)) for name in names]
    if dryrun:
        return names
    with progress_bar() as progress:
        for name, target in targets:
            download_file(client, progress, vol, name, target)
    return names


# -- az storage blob ---------------------------------------------------------------------------------------
@storage.group("blob", help="Manage blobs of containers.")
def blob() -> None:
    pass


def blob_item(entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": entry["name"], "properties": {**properties(entry), "blobType": "BlockBlob"}}


def blob_rows(items: Any) -> Any:
    """``-o table`` of blobs, as az shows them."""
    if not isinstance(items, list):
        return items
    return [
        {
            "Name": i["name"],
            "Blob Type": i["properties"]["blobType"],
            "Length": i["properties"]["contentLength"],
            "Last Modified": i["properties"]["lastModified"],
        }
        for i in items
    ]


def blob_name_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-n", "--name", required=True, help="The blob name.")(fn)


@command(blob, "upload", flat=False)
@container_option
@click.option("-f", "--file", "file_", required=True, help="Path of the local file to upload.")
@click.option("-n", "--name", help="The blob name; default: the file's name.")
@click.option("--overwrite", is_flag=True, hidden=True, help="Accepted for az compatibility (blobs are replaced).")
@click.option("--content-type", hidden=True, help="Accepted for az compatibility.")
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_options
def blob_upload(
    client: Client,
    account: str,
    container: str,
    file_: str,
    name: str | None,
    overwrite: bool,
    content_type: str | None,
    max_connections: int | None,
) -> Any:
    """Upload a file to a blob (streamed)."""
    vol = Volume(account, "containers", container)
    local = source_file(file_, "-f/--file")
    remote = clean_path(name, "-n/--name", allow_root=False) if name else remote_name(local, local.name)
    check_volume(client, vol)
    with progress_bar() as progress:
        entry = upload_file(client, progress, vol, local, remote)
    return {"name": entry["name"], **properties(entry)}


@command(blob, "download", flat=False)
@container_option
@blob_name_option
@click.option("-f", "--file", "file_", help="Local file or directory to write to; default: the blob's name, here.")
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_options
def blob_download(
    client: Client, account: str, container: str, name: str, file_: str | None, max_connections: int | None
) -> Any:
    """Download a blob to a file (streamed)."""
    vol = Volume(account, "containers", container)
    remote = clean_path(name, "-n/--name", allow_root=False)
    target = download_dest(file_, remote)
    with progress_bar() as progress:
        size = download_file(client, progress, vol, remote, target)
    return {"name": remote, "destination": str(target), "contentLength": size}


@command(blob, "list", flat=False, table=blob_rows)
@container_option
@click.option("--prefix", help="Only blobs whose names begin with this prefix.")
@click.option("--num-results", type=int, help="The most blobs to show.")
@account_options
def blob_list(client: Client, account: str, container: str, prefix: str | None, num_results: int | None) -> Any:
    """List the blobs of a container (every blob, under any folder)."""
    vol = Volume(account, "containers", container)
    folder = prefix.rpartition("/")[0] if prefix else ""
    folder = clean_path(folder, "--prefix")
    entries = list_entries(client, vol, folder, recursive=True) or []
    items = [
        blob_item(e) for e in entries if e.get("type") == "file" and (not prefix or str(e["name"]).startswith(prefix))
    ]
    return items[:num_results] if num_results is not None else items


@command(blob, "delete", flat=False)
@container_option
@blob_name_option
@account_options
def blob_delete(client: Client, account: str, container: str, name: str) -> Any:
    """Delete a blob."""
    vol = Volume(account, "containers", container)
    remote = clean_path(name, "-n/--name", allow_root=False)
    body(send(client, "DELETE", vol.item(remote)))
    return None


@command(blob, "exists", flat=False)
@container_option
@blob_name_option
@account_options
def blob_exists(client: Client, account: str, container: str, name: str) -> Any:
    """Check for the existence of a blob."""
    vol = Volume(account, "containers", container)
    remote = clean_path(name, "-n/--name", allow_root=False)
    entry = find_entry(client, vol, remote, PATH_MISSING | VOLUME_MISSING)
    return {"exists": entry is not None and entry.get("type") == "file"}


@command(blob, "show", flat=False)
@container_option
@blob_name_option
@account_options
def blob_show(client: Client, account: str, container: str, name: str) -> Any:
    """Show the properties of a blob."""
    vol = Volume(account, "containers", container)
    remote = clean_path(name, "-n/--name", allow_root=False)
    entry = find_entry(client, vol, remote)
    if entry is None or entry.get("type") != "file":
        raise CliError(f"(BlobNotFound) The blob '{remote}' was not found in the {vol.label}.")
    return blob_item(entry)


@command(blob, "upload-batch", flat=False)
@click.option("-s", "--source", required=True, help="The local directory to upload.")
@click.option(
    "-d",
    "--destination",
    "container",
    required=True,
    help="The container to upload to (name, container/folder or URL).",
)
@click.option("--destination-path", help="The folder (blob name prefix) to upload into.")
@pattern_option
@dryrun_option
@click.option("--overwrite", is_flag=True, hidden=True, help="Accepted for az compatibility (blobs are replaced).")
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_or_url_options
def blob_upload_batch(
    client: Client,
    account: str | None,
    source: str,
    container: str,
    destination_path: str | None,
    pattern: str | None,
    dryrun: bool,
    overwrite: bool,
    max_connections: int | None,
) -> Any:
    """Upload the files of a local directory to a container (recursively)."""
    vol, folder = batch_volume(account, container, "containers", "--destination")
    prefix = join(folder, clean_path(destination_path, "--destination-path"))
    return upload_batch(client, vol, Path(source).expanduser(), prefix, pattern, dryrun, "Blob")


@command(blob, "download-batch", flat=False)
@click.option(
    "-s",
    "--source",
    "container",
    required=True,
    help="The container to download from (name, container/folder or URL).",
)
@click.option("-d", "--destination", required=True, help="The local directory to download into.")
@pattern_option
@dryrun_option
@click.option("--max-connections", type=int, hidden=True, help="Accepted for az compatibility.")
@account_or_url_options
def blob_download_batch(
    client: Client,
    account: str | None,
    container: str,
    destination: str,
    pattern: str | None,
    dryrun: bool,
    max_connections: int | None,
) -> Any:
    """Download the blobs of a container to a local directory (recursively)."""
    vol, folder = batch_volume(account, container, "containers", "--source")
    return download_batch(client, vol, folder, Path(destination).expanduser(), pattern, dryrun)
