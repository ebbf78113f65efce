"""A Ray node's agent (``providers.node_agent``) without Ray: the class run in a process of its own, as its
actor runs, supervising real processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import psutil

from tests.conftest import process_gone

AGENT = """
import sys
from pathlib import Path
from batchai.providers.node_agent import NodeAgent

work = Path(sys.argv[1])
agent = NodeAgent(grace_seconds=1.0)
handle = agent.start(work / "task.sh", sys.argv[2], env={"PATH": "/usr/bin:/bin"}, cwd=work,
                     stdout=work / "stdout.txt", stderr=work / "stderr.txt", exit_file=work / "task.exit")
print(agent.wait(handle, 30).exit_code)
"""


def test_a_daemon_a_task_leaves_outside_its_session_ends_with_it(tmp_path: Path) -> None:
    """The agent adopts its tasks' orphans: a double-forked daemon in a session of its own ends with its task."""
    marker = tmp_path / "daemon.pid"
    body = (
        f"( setsid bash -c 'echo $$ > {marker}; exec sleep 300' < /dev/null > /dev/null 2>&1 & ); "
        f"while [ ! -s {marker} ]; do sleep 0.01; done"
    )
    try:
        ran = subprocess.run(
            [sys.executable, "-c", AGENT, str(tmp_path), body], capture_output=True, text=True, timeout=60
        )
        assert ran.stdout.strip() == "0", ran.stderr
        assert process_gone(int(marker.read_text()))
    finally:
        if marker.exists():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(int(marker.read_text())).kill()
