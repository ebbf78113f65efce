"""ARM resource ids: building them, and parsing the ones clients send (fixed segments case-insensitive)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchai.errors import InvalidInput

PROVIDER = "providers/Microsoft.BatchAI"
NAME = re.compile(r"^[-\w_]{1,64}$", re.ASCII)
# ARM allows any letters and digits in a resource group's name (Char.IsLetterOrDigit), not only ASCII ones.
GROUP_NAME = re.compile(r"^[-\w._()]{1,90}$")
STORAGE_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
SUBSCRIPTION = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_]{0,63}$", re.ASCII)  # a GUID, or any such name
SHARE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def check_name(kind: str, name: str, pattern: re.Pattern[str] = NAME, target: str | None = None) -> str:
    """Refuse a name that Batch AI would refuse, naming the rule (``target``: where it was given, else ``kind``)."""
    if not pattern.match(name) or name.endswith("."):
        rules = {
            NAME.pattern: "1 to 64 letters, digits, '-' or '_'",
            GROUP_NAME.pattern: "1 to 90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'",
            STORAGE_ACCOUNT_NAME.pattern: "3 to 24 lowercase letters and digits",
            SHARE_NAME.pattern: "3 to 63 lowercase letters, digits and single '-', starting with a letter or digit",
            SUBSCRIPTION.pattern: "1 to 64 letters, digits, '-' or '_', starting with a letter or digit",
        }
        raise InvalidInput(
            f"The {kind} name '{name}' is invalid: use {rules.get(pattern.pattern, pattern.pattern)}.",
            code="InvalidResourceName",
            target=target or kind,
        )
    return name


def group_id(sub: str, group: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}"


def workspace_id(sub: str, group: str, workspace: str) -> str:
    return f"{group_id(sub, group)}/{PROVIDER}/workspaces/{workspace}"


def experiment_id(sub: str, group: str, workspace: str, experiment: str) -> str:
    return f"{workspace_id(sub, group, workspace)}/experiments/{experiment}"


@dataclass(frozen=True)
class ChildRef:
    """A workspace child named by an ARM id: ``.../workspaces/{ws}/{collection}/{name}``."""

    subscription: str
    group: str
    workspace: str
    name: str


_CHILD = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.BatchAI/"
    r"workspaces/(?P<ws>[^/]+)/(?P<collection>clusters|fileServers)/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)


def parse_child_id(resource_id: str, collection: str, target: str) -> ChildRef:
    """Parse a cluster or file server id; a wrong shape is the client's error, naming ``target``."""
    match = _CHILD.match(resource_id.strip())
    if not match or match["collection"].lower() != collection.lower():
        raise InvalidInput(
            f"'{resource_id}' is not a {collection[:-1]} id: expected /subscriptions/{{sub}}/resourceGroups/"
            f"{{group}}/providers/Microsoft.BatchAI/workspaces/{{workspace}}/{collection}/{{name}}",
            target=target,
        )
    return ChildRef(match["sub"], match["group"], match["ws"], match["name"])
