"""Commands run on a node on request and waited for (``execOnNode``: az's ``node exec``, without SSH): through
the node's provider, like any process there, in the node's environment, with a time limit."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from batchai.errors import Conflict
from batchai.providers.base import NodeProvider, ProcessSpec, ProviderUnavailable
from batchai.runtime import launch, supervisor
from batchai.runtime.supervisor import Handle
from batchai.services.context import CommandResult, NodeTarget

OUTPUT_LIMIT = 1 << 20  # bytes of stdout and of stderr returned (the last ones)
EXIT_FILE = "exit_code"

log = logging.getLogger("batchai.engine")


def _work_dirs(node_dir: Path) -> Path:
    """Where a node's commands keep their script, output and exit files, one directory each."""
    return node_dir / "commands"


def run(
    provider: NodeProvider,
    base_env: dict[str, str],
    target: NodeTarget,
    command: str,
    timeout: float,
    grace: float,
) -> CommandResult:
    """Run ``command`` with bash on the node, in the job's working directory when there is one (else the
    node's work area), and wait at most ``timeout`` seconds; its output files are removed afterwards."""
    node_dir = provider.node_dir(target.cluster_id, target.node_name)
    cwd = node_dir
    env = launch.node_environment(base_env, node_dir, target.node_name)
    if target.job_id is not None:
        job_wd = launch.job_work_dir(node_dir, target.job_id)
        if job_wd.is_dir():
            cwd = job_wd
            env["AZ_BATCHAI_JOB_TEMP"] = str(job_wd)
    work = _work_dirs(node_dir) / uuid.uuid4().hex
    try:
        work.mkdir(parents=True)
        spec = ProcessSpec(
            work / "command.sh",
            command,
            env=env,
            cwd=cwd,
            stdout=work / "stdout.txt",
            stderr=work / "stderr.txt",
            exit_file=work / EXIT_FILE,
            node={k: str(v) for k, v in target.node_info.items() if k in provider.node_keys},
        )
        handle = provider.start(spec)
    except (OSError, ProviderUnavailable) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise Conflict(f"The command could not start on {target.node_name}: {exc}", code="NodeCommandFailed") from exc
    try:
        outcome = provider.wait(handle, timeout)
        timed_out = outcome is None
        if outcome is None:
            outcome = provider.stop(handle, grace)
        return CommandResult(
            exit_code=None if timed_out else outcome.exit_code,
            stdout=_tail(work / "stdout.txt"),
            stderr=_tail(work / "stderr.txt"),
            timed_out=timed_out,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def abandoned(nodes: list[tuple[Path, str]]) -> list[tuple[Path, Handle | None]]:
    """The commands an earlier server left on these nodes (it stopped while it waited for them: nobody waits
    for them any more, and they have no time limit without it): each one's directory and process, if it
    started. ``nodes``: each node's directory and where the node runs (its Ray node id; empty for local ones).
    Read before the server takes requests, so that none of its own commands is among them."""
    found: list[tuple[Path, Handle | None]] = []
    for node_dir, where in nodes:
        try:
            works = [path for path in _work_dirs(node_dir).iterdir() if path.is_dir()]
        except OSError:
            continue
        found += [(work, supervisor.find(work / EXIT_FILE, where)) for work in works]
    return found


def stop_abandoned(provider: NodeProvider, commands: list[tuple[Path, Handle | None]], grace: float) -> None:
    """Stop the ``abandoned`` commands that still run and remove their files."""
    for work, handle in commands:
        if handle is not None:
            try:
                provider.stop(handle, grace)
                log.info("stopped the command %s that an earlier server left running in %s", handle.pid, work)
            except Exception as exc:  # e.g. a node that has gone: nothing runs there any more
                log.warning("could not stop the command %s left in %s: %s", handle.pid, work, exc)
        shutil.rmtree(work, ignore_errors=True)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - OUTPUT_LIMIT))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
