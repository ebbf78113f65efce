"""The agent batchai keeps on each node of a Ray cluster (as a detached Ray actor).

It runs processes on its node under the same supervision contract as the local provider
(``runtime.supervisor``: a new session, output to files, an exit file, SIGTERM/grace/SIGKILL) and
answers for them. It outlives the server, so a restarted server re-attaches to the jobs it runs. If the
agent itself goes away (its node or its Ray worker died), a watchdog in each process's session ends the
session, so no job runs on unsupervised. An agent that has nothing running and has not been called for
``idle_seconds`` leaves (its server, if any, starts a new one when it needs the node again), so agents do
not outlast their servers for ever.

This module does not import ray: the provider wraps ``NodeAgent`` with ``ray.remote``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

from batchai.providers.local import free_ports, prepare_work_area
from batchai.runtime import orphans, supervisor
from batchai.runtime.supervisor import Handle, Outcome

MARKER = ".batchai-node"  # written by the agent into the node's work area when it prepares it


def watchdog(agent_pid: int, grace: float) -> str:
    """Bash that ends the whole session (SIGTERM, grace, SIGKILL) once process ``agent_pid`` is gone."""
    return (
        f"( while kill -0 {agent_pid} 2>/dev/null; do sleep 1; done; trap '' TERM; kill -TERM 0; "
        f"sleep {grace:g}; kill -KILL 0 ) >/dev/null 2>&1 &\n"
    )


class NodeAgent:
    """Runs and watches processes on one node. Every method is safe to call again (idempotent)."""

    def __init__(self, grace_seconds: float, idle_seconds: float = 600.0) -> None:
        self.grace_seconds = grace_seconds
        self.idle_seconds = idle_seconds
        self._called = time.monotonic()
        orphans.adopt()  # the daemons of a job become the agent's children, to end with the job
        threading.Thread(target=self._leave_when_idle, name="batchai-agent-idle", daemon=True).start()

    def _leave_when_idle(self) -> None:
        while True:
            time.sleep(min(5.0, self.idle_seconds / 4))
            supervisor.reap_orphans()  # those of its tasks' orphans that ended since
            idle = time.monotonic() - self._called >= self.idle_seconds
            if idle and not supervisor.running_children():
                os._exit(0)  # Ray marks the actor dead; its name is free for the next one

    def ping(self) -> int:
        self._called = time.monotonic()
        return os.getpid()

    def prepare(self, node_dir: Path, shared_dir: Path, links: list[tuple[Path, Path]]) -> str:
        """Make the work area; returns what it wrote to its ``MARKER`` file, for the server to find there too
        (the server and the node must share the filesystem)."""
        self._called = time.monotonic()
        prepare_work_area(node_dir, shared_dir, links)
        written = f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(8)}"
        (node_dir / MARKER).write_text(written)
        return written

    def release(self, node_dir: Path) -> None:
        """Stop what still runs of the node's processes (its setup task's daemons) and remove its work area."""
        self._called = time.monotonic()
        supervisor.stop_left_on(node_dir, self.grace_seconds)
        shutil.rmtree(node_dir, ignore_errors=True)

    def free_ports(self, count: int) -> list[int]:
        self._called = time.monotonic()
        return free_ports(count, host="")

    def start(
        self,
        script: Path,
        body: str,
        env: dict[str, str],
        cwd: Path,
        stdout: Path,
        stderr: Path,
        exit_file: Path,
        keep: bool = False,
    ) -> Handle:
        self._called = time.monotonic()
        script.parent.mkdir(parents=True, exist_ok=True)
        guarded = watchdog(os.getpid(), self.grace_seconds) + body
        script.write_text(supervisor.wrapper_script(guarded, exit_file))
        return supervisor.start(script, env=env, cwd=cwd, stdout=stdout, stderr=stderr, exit_file=exit_file, keep=keep)

    def poll(self, handle: Handle) -> Outcome | None:
        self._called = time.monotonic()
        return supervisor.poll(handle, self.grace_seconds)

    def wait(self, handle: Handle, timeout: float | None) -> Outcome | None:
        self._called = time.monotonic()
        return supervisor.wait(handle, timeout, self.grace_seconds)

    def stop(self, handle: Handle, grace: float) -> Outcome:
        self._called = time.monotonic()
        return supervisor.stop(handle, grace)
