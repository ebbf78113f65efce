"""Process supervision: how a started process is recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from batchai.runtime import supervisor


def _spawn(tmp_path: Path, code: str, exit_file: Path) -> tuple[subprocess.Popen[bytes], supervisor.Handle]:
    return supervisor.spawn(
        [sys.executable, "-c", code],
        env={},
        cwd=tmp_path,
        stdout=tmp_path / "stdout.txt",
        stderr=tmp_path / "stderr.txt",
        exit_file=exit_file,
    )


def test_a_process_is_recorded_with_the_start_time_the_os_gives_it(tmp_path: Path) -> None:
    """The start time a handle carries (taken from the clock, not read from the process) is the one psutil reads
    from the process later, to a clock tick: a server that restarts recognises the process by it."""
    for index in range(20):
        exit_file = tmp_path / f"task-{index}.exit"
        process, handle = _spawn(tmp_path, "import time; time.sleep(0.2)", exit_file)
        try:
            assert abs(psutil.Process(process.pid).create_time() - handle.start) <= 0.011
            assert supervisor.find(exit_file) == handle  # (its pid file says the same)
        finally:
            process.kill()
            process.wait()


def test_an_end_is_written_down_in_the_pid_file_or_the_exit_file(tmp_path: Path) -> None:
    """A process this one started has its exit code added to its pid file (no file created as it ends), which
    still tells its pid; one run in a ``wrapper_script`` writes its exit file. Either way ``poll`` reads it."""
    exit_file = tmp_path / "task-0-1.exit"
    process, handle = _spawn(tmp_path, "import sys; sys.exit(7)", exit_file)
    assert supervisor.recorded(exit_file) == (None, None)
    process.wait()
    supervisor.record_exit(handle, 7)
    code, when = supervisor.recorded(exit_file)
    assert code == 7 and when == supervisor.pid_file(exit_file).stat().st_mtime
    assert supervisor.find(exit_file) == handle
    assert not exit_file.exists()
    assert supervisor.poll(handle) == supervisor.Outcome(7, ended_at=when)

    script, wrapped = tmp_path / "task-1.sh", tmp_path / "task-1-1.exit"
    script.write_text(supervisor.wrapper_script("exit 5", wrapped))
    started = supervisor.start(
        script, env={}, cwd=tmp_path, stdout=tmp_path / "out1.txt", stderr=tmp_path / "err1.txt", exit_file=wrapped
    )
    assert supervisor.wait(started, timeout=10) == supervisor.Outcome(5, ended_at=wrapped.stat().st_mtime)


def test_a_pid_file_is_overwritten_never_emptied(tmp_path: Path) -> None:
    """A reused pid file (a job's earlier attempt, a spare job directory) names no process from the moment the
    next process's files are opened, and then names that process alone; it is never emptied on the way
    (``supervisor.NO_PROCESS``: truncating it to nothing costs a disk write and a block per job on ext4)."""
    exit_file = tmp_path / "task-0-2.exit"
    pids = supervisor.pid_file(exit_file)
    pids.write_text("999999 1700000000.123456789\n3")  # an earlier attempt's, longer than what follows
    outputs = supervisor.open_outputs(tmp_path / "stdout.txt", tmp_path / "stderr.txt", exit_file)
    assert pids.read_bytes() == supervisor.NO_PROCESS
    assert supervisor.find(exit_file) is None and supervisor.recorded(exit_file) == (None, None)

    process, handle = supervisor.spawn(
        [sys.executable, "-c", "pass"],
        env={},
        cwd=tmp_path,
        stdout=tmp_path / "stdout.txt",
        stderr=tmp_path / "stderr.txt",
        exit_file=exit_file,
        outputs=outputs,
    )
    assert pids.read_text() == f"{handle.pid} {handle.start!r}"
    supervisor.record_exit(handle, process.wait())
    assert supervisor.find(exit_file) == handle and supervisor.recorded(exit_file)[0] == 0
