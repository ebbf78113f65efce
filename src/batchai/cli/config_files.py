"""Reading cluster.json/job.json files as the az CLI did: ``$schema`` lines, a ``properties`` envelope,
and the ``<AZURE_BATCHAI_STORAGE_ACCOUNT>``/``<AZURE_BATCHAI_STORAGE_KEY>`` placeholders."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchai.cli.errors import CliError


def storage_account(option: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    return option or environ.get("AZURE_BATCHAI_STORAGE_ACCOUNT")


def load_properties(path: str | None, account: str | None, key: str | None = None) -> dict[str, Any]:
    """The ``properties`` of a configuration file (or {}), with the storage placeholders filled in."""
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    if "<AZURE_BATCHAI_STORAGE_ACCOUNT>" in text:
        if not account:
            raise CliError(
                f"{path} uses <AZURE_BATCHAI_STORAGE_ACCOUNT>: give --storage-account-name or set "
                "AZURE_BATCHAI_STORAGE_ACCOUNT"
            )
        text = text.replace("<AZURE_BATCHAI_STORAGE_ACCOUNT>", account)
    text = text.replace("<AZURE_BATCHAI_STORAGE_KEY>", key or "")
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
    return dict(props)


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
    mounts = dict(props_mounts or {})
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
