"""The exit watcher: one thread tells about the end of every process this server started (real processes)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from batchai.runtime import supervisor


def _start(tmp_path: Path, body: str, name: str) -> supervisor.Handle:
    script = tmp_path / f"{name}.sh"
    script.write_text(supervisor.wrapper_script(body, tmp_path / f"{name}.exit"))
    return supervisor.start(
        script,
        env=dict(os.environ),
        cwd=tmp_path,
        stdout=tmp_path / f"{name}.out",
        stderr=tmp_path / f"{name}.err",
        exit_file=tmp_path / f"{name}.exit",
    )


def test_each_watched_process_is_reported_once_it_ends(tmp_path: Path) -> None:
    watcher = supervisor.ExitWatcher()
    ended = {name: threading.Event() for name in ("quick", "slow")}
    try:
        quick = _start(tmp_path, "exit 3", "quick")
        slow = _start(tmp_path, "sleep 0.5", "slow")
        assert watcher.watch(quick, ended["quick"].set)
        assert watcher.watch(slow, ended["slow"].set)
        assert ended["quick"].wait(10)
        assert supervisor.poll(quick) == supervisor.Outcome(3)
        assert ended["slow"].wait(10)
        assert supervisor.poll(slow) == supervisor.Outcome(0)
    finally:
        watcher.close()
        watcher.close()  # idempotent


def test_a_process_that_is_not_ours_is_left_to_the_caller(tmp_path: Path) -> None:
    watcher = supervisor.ExitWatcher()
    try:
        assert not watcher.watch(supervisor.Handle(os.getpid(), 0.0, tmp_path / "x.exit"), lambda: None)
    finally:
        watcher.close()
