"""A Ray node's agent (``providers.node_agent``) without Ray: the class run in a process of its own, as its
actor runs, supervising real processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import psutil

from tests.conftest import process_gone, wait_for

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


GRACE = """
import sys, threading, time
from pathlib import Path
from batchai.providers.node_agent import NodeAgent

work = Path(sys.argv[1])
agent = NodeAgent(grace_seconds=5.0)
handle = agent.start(work / "task.sh", sys.argv[2], env={"PATH": "/usr/bin:/bin"}, cwd=work,
                     stdout=work / "stdout.txt", stderr=work / "stderr.txt", exit_file=work / "task.exit")
while not (work / "ready").exists():
    time.sleep(0.05)
stopping = threading.Thread(target=agent.stop, args=(handle, 5.0))
stopping.start()
while agent.poll(handle) is None:  # the engine polls while the stop runs
    time.sleep(0.01)
stopping.join()
"""


def test_a_stopped_task_behind_bash_still_has_its_grace_period(tmp_path: Path) -> None:
    """Bash ends on SIGTERM at once; the agent's polls must not kill the job's own process meanwhile: it
    saves its work on SIGTERM (as a training script does) before the grace period is over."""
    trainer = tmp_path / "trainer.py"
    trainer.write_text(
        "import signal, sys, time\n"
        "def save(*_):\n"
        "    time.sleep(1)\n"
        f"    open({str(tmp_path / 'saved')!r}, 'w').write('checkpoint')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        f"open({str(tmp_path / 'ready')!r}, 'w').write('ready')\n"
        "time.sleep(120)\n"
    )
    body = f"cd {tmp_path} && {sys.executable} {trainer}"
    ran = subprocess.run([sys.executable, "-c", GRACE, str(tmp_path), body], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "saved").read_text() == "checkpoint"


KEEP = """
import sys, time
from pathlib import Path
from batchai.providers.node_agent import NodeAgent

work = Path(sys.argv[1])
agent = NodeAgent(grace_seconds=1.0)
node = work / "node-0"
(node / "setup").mkdir(parents=True)
handle = agent.start(node / "setup" / "setup.sh", sys.argv[2], env={"PATH": "/usr/bin:/bin"}, cwd=node / "setup",
                     stdout=work / "stdout.txt", stderr=work / "stderr.txt", exit_file=node / "setup" / "exit_code",
                     keep=True)
print(agent.wait(handle, 30).exit_code, flush=True)
sys.stdin.readline()  # the test looked: the node goes
agent.release(node)
print(node.exists(), flush=True)
sys.stdin.readline()
"""


def test_a_setup_task_s_daemons_live_until_the_agent_releases_the_node(tmp_path: Path) -> None:
    """Started with ``keep`` (a setup task), what a task leaves running outlives it; releasing the node stops it."""
    marker = tmp_path / "daemon.pid"
    body = (
        f"( setsid bash -c 'echo $$ > {marker}; exec sleep 300' < /dev/null > /dev/null 2>&1 & ); "
        f"while [ ! -s {marker} ]; do sleep 0.01; done"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", KEEP, str(tmp_path), body], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None and agent.stdin is not None
        assert agent.stdout.readline().strip() == "0"
        daemon = int(marker.read_text())
        # The agent has seen the task end (and polled it): the daemon was left alone.
        assert not process_gone(daemon)
        agent.stdin.write("\n")
        agent.stdin.flush()
        assert agent.stdout.readline().strip() == "False"
        wait_for(lambda: process_gone(daemon), timeout=10, message="the daemon to be stopped")
    finally:
        agent.kill()
        agent.wait()
        if marker.exists():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(int(marker.read_text())).kill()


LINGERING = """
import os, sys
from pathlib import Path
from batchai.providers.node_agent import NodeAgent

work = Path(sys.argv[1])
agent = NodeAgent(grace_seconds=0.5)
handle = agent.start(work / "task.sh", sys.argv[2], env={"PATH": "/usr/bin:/bin"}, cwd=work,
                     stdout=work / "stdout.txt", stderr=work / "stderr.txt", exit_file=work / "task.exit")
outcome = agent.wait(handle, 30)
try:  # at once: is what the task left running still there?
    os.kill(int((work / "left.pid").read_text()), 0)
    left = "there"
except ProcessLookupError:
    left = "gone"
print(outcome.exit_code, left, flush=True)
"""


def test_a_task_s_end_is_told_once_what_it_left_running_is_gone(tmp_path: Path) -> None:
    """What a task leaves in its session that ignores SIGTERM is killed after the grace period; the agent tells
    the task's end (its node is free for the next task) only once that is gone, dead and reaped, as the local
    launcher does."""
    marker = tmp_path / "left.pid"
    body = f"(trap '' TERM; echo $BASHPID > {marker}; exec sleep 300) & while [ ! -s {marker} ]; do sleep 0.01; done"
    try:
        ran = subprocess.run(
            [sys.executable, "-c", LINGERING, str(tmp_path), body], capture_output=True, text=True, timeout=60
        )
        assert ran.stdout.split() == ["0", "gone"], ran.stderr
    finally:
        if marker.exists():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(int(marker.read_text())).kill()
