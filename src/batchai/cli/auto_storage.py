"""``cluster create --use-auto-storage``, as az did it: one storage account per location in the resource group
``batchaiautostorage`` (made if missing), with the share ``batchaishare`` and the container
``batchaicontainer``, mounted on every node at ``$AZ_BATCHAI_MOUNT_ROOT/autoafs`` and ``.../autobfs``."""

from __future__ import annotations

import secrets
import string

from batchai.cli.arm import RG_API, group_path, workspace_path
from batchai.cli.client import Client
from batchai.cli.common import warn
from batchai.cli.storage import STORAGE_API, Volume, account_path, create_volume

GROUP = "batchaiautostorage"
SHARE, SHARE_PATH = "batchaishare", "autoafs"
CONTAINER, CONTAINER_PATH = "batchaicontainer", "autobfs"


def _same_location(a: str, b: str) -> bool:
    return a.lower().replace(" ", "") == b.lower().replace(" ", "")


def auto_storage_account(client: Client, group: str, workspace: str) -> str:
    """The auto-storage account for the workspace's location, with its share and container (made if missing)."""
    location = str(client.get(workspace_path(client, group, workspace))["location"])
    if client.get(group_path(client, GROUP), api_version=RG_API, ok_missing=True) is None:
        warn(f"Creating {GROUP} resource group for auto-storage account")
        client.put(group_path(client, GROUP), {"location": location}, api_version=RG_API)
    else:
        warn(f"BatchAI will use existing {GROUP} resource group for auto-storage account")
    in_group = f"{group_path(client, GROUP)}/providers/Microsoft.Storage/storageAccounts"
    accounts = client.list(in_group, api_version=STORAGE_API)
    account = next((str(a["name"]) for a in accounts if _same_location(str(a.get("location", "")), location)), None)
    if account is None:
        account = _create_account(client, location)
        warn(f"Created auto storage account {account}")
    else:
        warn(f"Using existing {account} storage account as an auto-storage account")
    create_volume(client, Volume(account, "shares", SHARE), fail_on_exist=False)
    create_volume(client, Volume(account, "containers", CONTAINER), fail_on_exist=False)
    return account


def _create_account(client: Client, location: str) -> str:
    """A new account named ``bai`` and 12 random lowercase letters."""
    name = "bai" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
    body = {"location": location, "sku": {"name": "Standard_LRS"}, "kind": "Storage"}
    client.put(account_path(client, GROUP, name), body, api_version=STORAGE_API)
    return name
