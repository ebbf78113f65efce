"""Reading cluster.json/job.json files as the az CLI did: ``$schema`` lines, a ``properties`` envelope,
and the ``<AZURE_BATCHAI_STORAGE_ACCOUNT>``/``<AZURE_BATCHAI_STORAGE_KEY>`` placeholders."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchai.cli.errors import CliError


def storage_account(option: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    return option or environ.get("AZURE_BATCHAI_STORAGE_ACCOUNT")


# A sample's "fill in your own" text, such as <YOUR_STORAGE_ACCOUNT> in the quickstart's job.json.
_PLACEHOLDER = re.compile(r"<YOUR[^<>\"]*>")


def load_properties(path: str | None, account: str | None, key: str | None = None) -> dict[str, Any]:
    """The ``properties`` of a configuration file (or {}), with the storage placeholders filled in."""
    if not path:
        return {}
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")  # (a byte order mark, as Windows editors write, is allowed)
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8 JSON") from exc
    if "<AZURE_BATCHAI_STORAGE_ACCOUNT>" in text:
        if not account:
            raise CliError(
                f"{path} uses <AZURE_BATCHAI_STORAGE_ACCOUNT>: give --storage-account-name or set "
                "AZURE_BATCHAI_STORAGE_ACCOUNT"
            )
        text = text.replace("<AZURE_BATCHAI_STORAGE_ACCOUNT>", account)
    text = text.replace("<AZURE_BATCHAI_STORAGE_KEY>", key or "")
    left = _PLACEHOLDER.search(text)
    if left:
        raise CliError(
            f"{path} still holds the placeholder {left[0]}: replace it with your value (only "
            "<AZURE_BATCHAI_STORAGE_ACCOUNT> and <AZURE_BATCHAI_STORAGE_KEY> are filled in, from "
            "--storage-account-name and --storage-account-key)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a JSON object")
    data.pop("$schema", None)
    props = data.get("properties", data)
    if not isinstance(props, dict):
        raise CliError(f"{path}: 'properties' must be a JSON object")
    check_shapes(props, f"{path}: ")
    return dict(props)


# What the CLI itself reads from a file, or adds to, before the server checks the rest: these must be objects
# (or null), and the mount lists lists.
OBJECTS = (
    "cluster",
    "mountVolumes",
    "nodeSetup",
    "nodeSetup.mountVolumes",
    "userAccountSettings",
    "virtualMachineConfiguration",
    "dataDisks",
    "sshConfiguration",
    "sshConfiguration.userAccountSettings",
)
MOUNT_LISTS = ("azureFileShares", "azureBlobFileSystems", "fileServers")


def _kind(value: Any) -> str:
    """A JSON value's type, for an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def check_shapes(props: dict[str, Any], where: str = "") -> None:
    """Fail with one line (``where`` first) if a part of ``props`` the CLI reads or extends has the wrong JSON
    type."""
    for name in OBJECTS:
        parent: Any = props
        *outer, last = name.split(".")
        for part in outer:
            parent = parent.get(part) if isinstance(parent, dict) else None
        value = parent.get(last) if isinstance(parent, dict) else None
        if value is not None and not isinstance(value, dict):
            raise CliError(f"{where}'{name}' must be a JSON object, not {_kind(value)}")
        if last == "mountVolumes":
            check_mounts(value, name, where)


def check_mounts(mounts: Any, name: str = "mountVolumes", where: str = "") -> dict[str, Any]:
    """``mountVolumes`` (or {}) once its ``azureFileShares``, ``azureBlobFileSystems`` and ``fileServers`` are
    checked to be lists of objects; else a one-line error."""
    if mounts is None:
        return {}
    if not isinstance(mounts, dict):
        raise CliError(f"{where}'{name}' must be a JSON object, not {_kind(mounts)}")
    for key in MOUNT_LISTS:
        entries = mounts.get(key)
        if entries is not None and not isinstance(entries, list):
            raise CliError(f"{where}'{name}.{key}' must be a JSON list of objects, not {_kind(entries)}")
        for index, entry in enumerate(entries or []):
            if not isinstance(entry, dict):
                raise CliError(f"{where}'{name}.{key}[{index}]' must be a JSON object, not {_kind(entry)}")
    return mounts


def file_share_url(account: str, share: str) -> str:
    return f"https://{account}.file.core.windows.net/{share}"


def add_mounts(
    props_mounts: dict[str, Any] | None,
    account: str | None,
    afs_name: str | None,
    afs_mount_path: str,
    bfs_name: str | None,
    bfs_mount_path: str,
    nfs_id: str | None,
    nfs_mount_path: str,
) -> dict[str, Any] | None:
    """Mount volumes from ``--afs-name``, ``--bfs-name`` and ``--nfs`` added to those of the file."""
    mounts = {
        key: list(value) if key in MOUNT_LISTS else value
        for key, value in check_mounts(props_mounts).items()
        if not (key in MOUNT_LISTS and value is None)  # (a null list is left out, as if absent)
    }
    if (afs_name or bfs_name) and not account:
        raise CliError("--afs-name and --bfs-name need --storage-account-name (or AZURE_BATCHAI_STORAGE_ACCOUNT)")
    if afs_name and account:
        mounts.setdefault("azureFileShares", []).append(
            {
                "accountName": account,
                "azureFileUrl": file_share_url(account, afs_name),
                "relativeMountPath": afs_mount_path,
            }
        )
    if bfs_name and account:
        mounts.setdefault("azureBlobFileSystems", []).append(
            {"accountName": account, "containerName": bfs_name, "relativeMountPath": bfs_mount_path}
        )
    if nfs_id:
        mounts.setdefault("fileServers", []).append({"fileServer": {"id": nfs_id}, "relativeMountPath": nfs_mount_path})
    return mounts or None
