"""Process supervision: how a started process is recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil

from batchai.runtime import supervisor


def test_a_process_is_recorded_with_the_start_time_the_os_gives_it(tmp_path: Path) -> None:
    """The start time a handle carries (taken from the clock, not read from the process) is the one psutil reads
    from the process later, to a clock tick: a server that restarts recognises the process by it."""
    for index in range(20):
        exit_file = tmp_path / f"task-{index}.exit"
        process, handle = supervisor.spawn(
            [sys.executable, "-c", "import time; time.sleep(0.2)"],
            env={},
            cwd=tmp_path,
            stdout=tmp_path / "stdout.txt",
            stderr=tmp_path / "stderr.txt",
            exit_file=exit_file,
        )
        try:
            assert abs(psutil.Process(process.pid).create_time() - handle.start) <= 0.011
            assert supervisor.find(exit_file) == handle  # (its pid file says the same)
        finally:
            process.kill()
            process.wait()
