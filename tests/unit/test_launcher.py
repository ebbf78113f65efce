"""The process launcher: it starts processes for the server, outlives it, and records how they end (real
processes, a real launcher process, its real socket)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest.mock import ANY

import psutil
import pytest

from batchai.runtime import launcher, supervisor
from batchai.runtime.launcher import LauncherClient, Spawn
from batchai.runtime.supervisor import Handle, Outcome
from tests.conftest import process_gone, wait_for


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    # Longer than a Unix socket address may be: the launcher must not care.
    path = tmp_path / ("d" * 60) / ("e" * 60) / "run"
    yield path
    # Nothing outlives a test, whatever it asserted: neither its launcher nor what that started (a gated process
    # of a test that failed before opening its gate), found by the paths in their command lines and environments.
    for process in psutil.process_iter(["cmdline", "environ"]):
        named = [*(process.info["cmdline"] or []), *(process.info["environ"] or {}).values()]
        if process.pid != os.getpid() and any(str(tmp_path) in part for part in named):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


@pytest.fixture
def client(run_dir: Path) -> Iterator[LauncherClient]:
    launcher_client = LauncherClient(run_dir)
    yield launcher_client
    launcher_client.close()


def _start(client: LauncherClient, tmp_path: Path, name: str, argv: list[str], script: str = "") -> Handle:
    fallback = None
    if script:
        (tmp_path / f"{name}.sh").write_text(script)
        fallback = ["bash", str(tmp_path / f"{name}.sh")]
    return client.start(_spawn(tmp_path, name, argv, fallback))


def _spawn(tmp_path: Path, name: str, argv: list[str], fallback: list[str] | None = None) -> Spawn:
    return Spawn(
        argv,
        {"PATH": "/usr/bin:/bin"},
        tmp_path,
        tmp_path / name / "stdout.txt",
        tmp_path / name / "stderr.txt",
        tmp_path / f"{name}.exit",
        fallback=fallback,
    )


def _launcher(run_dir: Path) -> psutil.Process:
    (found,) = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "batchai.runtime.launcher" in (p.info["cmdline"] or []) and str(run_dir) in p.info["cmdline"]
    ]
    return found


def test_a_process_runs_under_the_launcher_and_its_end_is_told(tmp_path: Path, run_dir: Path) -> None:
    client = LauncherClient(run_dir)
    ended = threading.Event()
    code = "import os, sys; print(os.getcwd(), os.environ['PATH']); sys.exit(3)"
    handle = _start(client, tmp_path, "quick", [sys.executable, "-c", code])
    assert client.watch(handle, ended.set)
    assert ended.wait(10)
    assert client.outcome(handle) == Outcome(3, ended_at=ANY)
    assert supervisor.recorded(handle.exit_file)[0] == 3
    assert supervisor.find(handle.exit_file) == handle  # (its pid file's first line)
    assert (tmp_path / "quick" / "stdout.txt").read_text() == f"{tmp_path} /usr/bin:/bin\n"
    launcher = _launcher(run_dir)
    client.close()
    client.close()  # idempotent
    assert not launcher.is_running()  # idle: it ended with the connection


def test_a_program_that_cannot_start_runs_its_fallback(tmp_path: Path, client: LauncherClient) -> None:
    handle = _start(client, tmp_path, "missing", ["/no/such/program"], script="echo fallback ran\nexit 5\n")
    wait_for(lambda: client.outcome(handle) is not None, timeout=10)
    assert client.outcome(handle) == Outcome(5, ended_at=ANY)
    assert (tmp_path / "missing" / "stdout.txt").read_text() == "fallback ran\n"


def test_processes_outlive_the_server_and_a_new_one_hears_of_their_end(tmp_path: Path, run_dir: Path) -> None:
    gate = tmp_path / "gate"
    first = LauncherClient(run_dir)
    handle = _start(first, tmp_path, "long", ["bash", "-c", f"until [ -e {gate} ]; do sleep 0.02; done; exit 7"])
    first.close()  # the server goes away; the process runs on
    launcher = _launcher(run_dir)
    assert psutil.Process(handle.pid).ppid() == launcher.pid
    second = LauncherClient(run_dir)
    ended = threading.Event()
    try:
        assert second.watch(handle, ended.set)
        assert second.outcome(handle) is None
        gate.touch()
        assert ended.wait(10)
        assert second.outcome(handle) == Outcome(7, ended_at=ANY)
    finally:
        second.close()
    assert not launcher.is_running()


def test_what_a_process_leaves_in_its_session_ends_with_it(tmp_path: Path, client: LauncherClient) -> None:
    marker = tmp_path / "orphan.pid"
    handle = _start(client, tmp_path, "leaver", ["bash", "-c", f"sleep 300 & echo $! > {marker}"])
    wait_for(lambda: client.outcome(handle) is not None, timeout=10)
    orphan = int(marker.read_text())
    wait_for(lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie", timeout=10)


def test_a_launcher_that_died_is_replaced_at_the_next_start(
    tmp_path: Path, run_dir: Path, client: LauncherClient
) -> None:
    first = _start(client, tmp_path, "one", ["true"])
    wait_for(lambda: client.outcome(first) is not None, timeout=10)
    old = _launcher(run_dir)
    old.kill()
    old.wait(10)
    second = _start(client, tmp_path, "two", ["true"])
    wait_for(lambda: client.outcome(second) is not None, timeout=10)
    assert client.outcome(second) == Outcome(0, ended_at=ANY)
    assert _launcher(run_dir).pid != old.pid


def test_a_launcher_whose_server_stopped_before_it_connected_ends(tmp_path: Path, run_dir: Path) -> None:
    """A server killed just after it started its launcher never connects to it: the launcher ends soon (rather
    than waiting half a minute for a first client), and a server started since connects to a new one."""
    spawn = (
        "import os, subprocess, sys; subprocess.Popen([sys.executable, '-m', 'batchai.runtime.launcher', "
        f"{str(run_dir)!r}, str(os.getpid())], start_new_session=True)"
    )
    subprocess.run([sys.executable, "-c", spawn], check=True)  # the "server" is gone as soon as it has started it
    found = wait_for(lambda: [p for p in psutil.process_iter(["cmdline"]) if str(run_dir) in (p.info["cmdline"] or [])])
    wait_for(lambda: all(process_gone(p.pid) for p in found), timeout=10, message="the orphaned launcher to end")
    client = LauncherClient(run_dir)
    try:
        handle = _start(client, tmp_path, "after", ["true"])
        wait_for(lambda: client.outcome(handle) is not None, timeout=10)
        assert client.outcome(handle) == Outcome(0, ended_at=ANY)
    finally:
        client.close()


def test_a_client_that_sends_something_else_is_dropped_and_others_are_served(
    tmp_path: Path, run_dir: Path, client: LauncherClient
) -> None:
    first = _start(client, tmp_path, "before", ["true"])
    directory = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
            stranger.connect(launcher._address(directory))
            stranger.settimeout(10)
            stranger.sendall(b"not json\n")
            heard = b""
            while chunk := stranger.recv(1 << 16):  # its hello, maybe the end of "before": then dropped
                heard += chunk
            assert all(b'"id"' not in line for line in heard.splitlines())
    finally:
        os.close(directory)
    second = _start(client, tmp_path, "after", ["true"])
    wait_for(lambda: client.outcome(first) is not None and client.outcome(second) is not None, timeout=10)
    assert "something else than a request" in (run_dir / "launcher.log").read_text()


def test_a_daemon_orphaned_after_its_process_ended_is_told_to_stop_too(
    tmp_path: Path, run_dir: Path, client: LauncherClient
) -> None:
    """A daemon whose parent outlives the process (ignoring the SIGTERM its session got) is adopted only once
    that parent ends: it is told to stop then, rather than killed when the grace period (10 s) is over."""
    daemon_pid = tmp_path / "daemon.pid"
    # The subshell starts the daemon (in a session of its own), then ignores SIGTERM and lives a second more.
    lingering = (
        f"( setsid bash -c 'echo $$ > {daemon_pid}; exec sleep 300' < /dev/null > /dev/null 2>&1 & "
        "trap '' TERM; sleep 1 ) & "
        f"while [ ! -s {daemon_pid} ]; do sleep 0.01; done"
    )
    handle = _start(client, tmp_path, "lingering", ["bash", "-c", lingering])
    try:
        wait_for(lambda: daemon_pid.exists() and daemon_pid.read_text().strip(), timeout=10)
        daemon = int(daemon_pid.read_text())
        wait_for(lambda: process_gone(daemon), timeout=6)
        wait_for(lambda: client.outcome(handle) is not None, timeout=6)
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, psutil.NoSuchProcess):
            psutil.Process(int(daemon_pid.read_text())).kill()


def test_a_daemon_a_process_leaves_outside_its_session_ends_with_it(
    tmp_path: Path, run_dir: Path, client: LauncherClient
) -> None:
    """A double-forked daemon in a session of its own (what ``killpg`` cannot reach) is adopted by the
    launcher and ended with the process that started it; a process of another task is left alone."""
    daemon_pid, other_pid = tmp_path / "daemon.pid", tmp_path / "other.pid"
    # setsid: a new session; the subshell exits at once, so the daemon's parent is gone (a double fork). The
    # daemon writes its pid once in its session, and the process waits for that (killpg cannot reach it then).
    daemonize = (
        "( setsid bash -c 'echo $$ > {0}; exec sleep 300' < /dev/null > /dev/null 2>&1 & ); "
        "while [ ! -s {0} ]; do sleep 0.01; done"
    )
    other = _start(client, tmp_path, "other", ["bash", "-c", daemonize.format(other_pid) + "; sleep 300"])
    handle = _start(client, tmp_path, "daemonizer", ["bash", "-c", daemonize.format(daemon_pid)])
    try:
        wait_for(lambda: client.outcome(handle) is not None, timeout=10)
        daemon = int(daemon_pid.read_text())
        wait_for(lambda: process_gone(daemon), timeout=10)
        wait_for(lambda: other_pid.exists() and other_pid.read_text().strip(), timeout=10)
        survivor = psutil.Process(int(other_pid.read_text()))
        assert survivor.is_running() and survivor.status() != psutil.STATUS_ZOMBIE
        assert survivor.ppid() == _launcher(run_dir).pid  # adopted, not init's
    finally:
        for marker in (daemon_pid, other_pid):
            with contextlib.suppress(FileNotFoundError, ValueError, psutil.NoSuchProcess):
                psutil.Process(int(marker.read_text())).kill()
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(other.pid).kill()


def _follow(client: LauncherClient, tmp_path: Path, name: str, after: Handle) -> launcher.Follower:
    """A follower of ``after`` that prints when it started (epoch seconds)."""
    return client.follow(after, _spawn(tmp_path, name, [sys.executable, "-c", "import time; print(time.time())"]))


def _never_ran(tmp_path: Path, name: str) -> bool:
    """Whether the process ``_spawn(tmp_path, name, ...)`` never started (its files may be open already)."""
    stdout = tmp_path / name / "stdout.txt"
    return supervisor.find(tmp_path / f"{name}.exit") is None and not (stdout.exists() and stdout.read_text())


def _gated(client: LauncherClient, tmp_path: Path, name: str) -> tuple[Handle, Path]:
    gate = tmp_path / f"{name}.gate"
    return _start(client, tmp_path, name, ["bash", "-c", f"until [ -e {gate} ]; do sleep 0.02; done"]), gate


def test_a_follower_starts_the_moment_its_process_has_ended(tmp_path: Path, client: LauncherClient) -> None:
    first, gate = _gated(client, tmp_path, "first")
    assert client.follows(first)
    follower = _follow(client, tmp_path, "next", first)
    assert not follower.handle.done()
    assert _never_ran(tmp_path, "next")
    wait_for(lambda: (tmp_path / "next" / "stdout.txt").exists(), timeout=10)  # its files are opened meanwhile
    assert _never_ran(tmp_path, "next")
    gate.touch()
    handle = follower.handle.result(10)
    wait_for(lambda: client.outcome(handle) is not None, timeout=10)
    assert client.outcome(handle) == Outcome(0, ended_at=ANY)
    assert client.outcome(first) == Outcome(0, ended_at=ANY)
    started = float((tmp_path / "next" / "stdout.txt").read_text())
    assert started >= (supervisor.recorded(first.exit_file)[1] or 0)  # after the first one's exit was written
    assert not client.cancel(follower)  # it started: too late


def _holds_files_of(run_dir: Path, directory: Path) -> bool:
    return any(Path(f.path).is_relative_to(directory) for f in _launcher(run_dir).open_files())


def test_a_cancelled_follower_never_starts(tmp_path: Path, run_dir: Path, client: LauncherClient) -> None:
    first, gate = _gated(client, tmp_path, "first")
    follower = _follow(client, tmp_path, "next", first)
    assert client.cancel(follower)
    assert follower.handle.cancelled()
    ended = threading.Event()
    assert client.watch(first, ended.set)
    gate.touch()
    assert ended.wait(10)  # the first one's end is told after its followers have started: none did
    assert _never_ran(tmp_path, "next")
    assert not (tmp_path / "next.exit").exists()
    assert not _holds_files_of(run_dir, tmp_path / "next")  # (its files, opened meanwhile, are closed)


def test_a_follower_of_a_process_that_has_ended_starts_at_once(tmp_path: Path, client: LauncherClient) -> None:
    first = _start(client, tmp_path, "first", ["true"])
    wait_for(lambda: client.outcome(first) is not None, timeout=10)
    assert not client.follows(first)  # (the engine starts such a job itself)
    handle = _follow(client, tmp_path, "next", first).handle.result(10)
    wait_for(lambda: client.outcome(handle) is not None, timeout=10)
    assert client.outcome(handle) == Outcome(0, ended_at=ANY)


def test_followers_go_with_the_server_that_asked_for_them(tmp_path: Path, run_dir: Path) -> None:
    """A server that stops (or dies) takes its followers with it: what it did not record must not start."""
    first_server = LauncherClient(run_dir)
    first, gate = _gated(first_server, tmp_path, "first")
    _follow(first_server, tmp_path, "next", first)
    first_server.close()
    second_server = LauncherClient(run_dir)
    try:
        ended = threading.Event()
        assert second_server.watch(first, ended.set)
        gate.touch()
        assert ended.wait(10)
        assert _never_ran(tmp_path, "next")
        assert not _holds_files_of(run_dir, tmp_path / "next")
    finally:
        second_server.close()


def test_a_follower_starts_only_once_what_was_killed_after_the_grace_period_is_gone(
    tmp_path: Path, client: LauncherClient
) -> None:
    """What a process leaves running that ignores SIGTERM is killed when the grace period is over: the node's next
    process (a follower) starts once it is gone, not the moment SIGKILL is sent (a process that is dying, or
    dead and not yet reaped, still holds what it held, e.g. its GPU's memory). Several rounds: the follower
    looks at once whether the killed process still exists."""
    for round_ in range(10):
        left, follower = _follower_of_a_process_that_leaves_one_ignoring_sigterm(client, tmp_path, f"r{round_}")
        assert follower.exit_code == 1, f"round {round_}: the follower started while the killed process was there"
        assert process_gone(left)


def _follower_of_a_process_that_leaves_one_ignoring_sigterm(
    client: LauncherClient, tmp_path: Path, name: str
) -> tuple[int, Outcome]:
    """A process that leaves one ignoring SIGTERM (grace period 0.1 s) and ends, followed by ``kill -0`` on that
    one: its pid, and how the follower ended."""
    pid_file, gate = tmp_path / f"{name}.left", tmp_path / f"{name}.gate"
    script = f"(trap '' TERM; echo $BASHPID > {pid_file}; exec sleep 60) & until [ -e {gate} ]; do sleep 0.01; done"
    first = client.start(replace(_spawn(tmp_path, name, ["bash", "-c", script]), grace=0.1))
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=10)
    left = int(pid_file.read_text())
    follower = client.follow(first, _spawn(tmp_path, f"{name}-next", ["sh", "-c", f"kill -0 {left} 2>/dev/null"]))
    gate.touch()
    handle = follower.handle.result(10)
    wait_for(lambda: client.outcome(handle) is not None, timeout=10)
    outcome = client.outcome(handle)
    assert outcome is not None
    return left, outcome
