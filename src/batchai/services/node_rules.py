"""Rules for what a job or a cluster asks of its nodes: paths on a node, environment variables, and how many
nodes and processes one request may ask for (so that no request can make the scheduler do unbounded work)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from batchai.errors import InvalidInput

MAX_CLUSTER_NODES = 1000  # the most nodes a cluster may have (target, auto-scale maximum)
MAX_PROCESSES_PER_NODE = 256  # the most processes a job may start on each of its nodes
MAX_WALL_CLOCK_DAYS = 3650  # the longest maxWallClockTime: ten years
MAX_VARIABLE = 128 * 1024  # one NAME=value (Linux's MAX_ARG_STRLEN)
MAX_ENVIRONMENT = 1024 * 1024  # all of a job's (or setup task's) variables, within the kernel's ARG_MAX

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIX = "AZ_BATCHAI_"  # the job environment batchai sets: a job or setup task may not redefine it


def check_node_path(value: str | None, target: str) -> str:
    """A path on a node where batchai writes (stdOutErrPathPrefix, an output's pathPrefix): absolute or starting
    with a variable such as ``$AZ_BATCHAI_JOB_MOUNT_ROOT``, and never climbing out with ``..``."""
    path = (value or "").strip()
    if not path:
        raise InvalidInput(f"{target} is required: the folder on the node that the output goes to.", target=target)
    if not path.startswith(("/", "$")):
        raise InvalidInput(
            f"The path '{path}' is relative: give an absolute path on the node, or one under "
            "$AZ_BATCHAI_MOUNT_ROOT or $AZ_BATCHAI_JOB_MOUNT_ROOT.",
            target=target,
        )
    check_no_climbing(path, target)
    return path


def check_no_climbing(path: str, target: str) -> None:
    """Refuse ``..`` segments (and NUL) in a path that batchai appends to or creates."""
    if "\x00" in path or ".." in path.replace("\\", "/").split("/"):
        raise InvalidInput(f"The path '{path}' may not contain '..'.", target=target)


def check_variables(variables: Iterable[dict[str, Any]], target: str, taken: set[str]) -> None:
    """Environment variable names: shell names, each once (``taken``: names given already), none of batchai's;
    each variable small enough for the kernel to pass to a process, and the list within ``MAX_ENVIRONMENT``."""
    total = 0
    for i, variable in enumerate(variables):
        size = len(f"{variable.get('name') or ''}={variable.get('value') or ''}".encode())
        total += size
        if size > MAX_VARIABLE or total > MAX_ENVIRONMENT:
            raise InvalidInput(
                f"The variables are too large for a process's environment: at most {MAX_VARIABLE // 1024} KiB "
                f"each and {MAX_ENVIRONMENT // 1024} KiB in all.",
                target=f"{target}[{i}].value",
            )
        if "\0" in str(variable.get("value") or ""):  # no process environment can hold one
            raise InvalidInput("A variable's value may not contain a NUL character.", target=f"{target}[{i}].value")
        name = variable.get("name") or ""
        if not _VARIABLE.match(name) or name in taken:
            raise InvalidInput(f"The variable name '{name}' is invalid or used twice.", target=f"{target}[{i}].name")
        if name.startswith(RESERVED_PREFIX):
            raise InvalidInput(
                f"The variable '{name}' is batchai's ({RESERVED_PREFIX}*): it may not be given.",
                target=f"{target}[{i}].name",
            )
        taken.add(name)


def check_count(value: int, most: int, what: str, target: str) -> None:
    if value > most:
        raise InvalidInput(f"{what} may be at most {most}; it is {value}.", target=target)
