"""Files only their owner may read: credentials and client configuration (mode 0600), lock files, and the
server's home (0700)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def private_dir(path: Path) -> None:
    """Make ``path`` (and its parents) a directory only its owner may enter: created 0700, and made 0700 if it
    was open to others (a home made before, by hand or by ``mkdir``: its database holds the jobs' secrets)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Make ``path`` a file only its owner may read: created 0600 if missing, else made 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only (created 0600, never world-readable for an instant)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def try_lock(path: Path, create: bool = True) -> int | None:
    """An exclusive ``flock`` on ``path`` (made 0600 if missing and ``create``): the open descriptor, which holds
    the lock until it is closed (it is not handed to child processes); None if another process holds it.
    Raises FileNotFoundError if the file is missing and not ``create``."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
