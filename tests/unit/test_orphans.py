"""Telling a task's orphans by the tag in their environment (``runtime.orphans``), with real processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from batchai.runtime import orphans


def test_a_tagged_process_in_the_middle_of_an_exec_is_still_told_apart(tmp_path: Path) -> None:
    """A process's environment reads empty for a moment while it execs (a daemon's ``exec sleep``): the launcher's
    look at its adopted children reads it again rather than take it for untagged (and leave it running)."""
    chain = tmp_path / "chain.sh"  # 300 execs in a row, then a sleep
    chain.write_text('[ "$1" -gt 0 ] && exec /bin/sh "$0" $(($1 - 1))\nexec sleep 5\n')
    task = str(tmp_path / "task.exit")
    process = subprocess.Popen(["/bin/sh", str(chain), "300"], env={**os.environ, orphans.TAG: task})
    tag = f"\0{orphans.TAG}={task}\0".encode()
    looks = missed = 0
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _comm(process.pid) != "sleep":
            found = orphans._carries(process.pid, tag, patient=True)
            if process.poll() is None:
                looks += 1
                missed += not found
    finally:
        process.kill()
        process.wait()
    assert looks > 100
    assert missed == 0, f"{missed} of {looks} looks took the process for untagged"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
