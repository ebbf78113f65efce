"""``batchai server start|status|stop`` as a user runs them: a detached server on a port of its choosing, and a
port already taken refused at once with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.conftest import BIN


def batchai(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
    return subprocess.run(
        [str(BIN / "batchai"), *args],
        env={**environ, "BATCHAI_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_detached_server_on_port_0_takes_a_free_port_and_names_it(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    started = batchai(home, "server", "start", "--detach", "--port", "0")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:
        host, _, port = info["endpoint"].removeprefix("http://").partition(":")
        assert host == "127.0.0.1" and int(port) > 0
        status = json.loads(batchai(home, "server", "status").stdout)
        assert (status["running"], status["pid"], status["endpoint"]) == (True, info["pid"], info["endpoint"])
        # The CLI finds it through the home, at the port it took.
        created = batchai(home, "group", "create", "-n", "rg", "-l", "eastus")
        assert created.returncode == 0 and json.loads(created.stdout)["name"] == "rg", created.stderr

        # Another server on that port: refused at once, in one line, in the foreground and detached alike.
        taken = f"ERROR: cannot listen on 127.0.0.1:{port}: Address already in use"
        assert one_error_line(batchai(other, "server", "start", "--port", port)) == taken
        detached = one_error_line(batchai(other, "server", "start", "--detach", "--port", port))
        assert detached.startswith(f"ERROR: the server exited with code 1: {taken.removeprefix('ERROR: ')}")
    finally:
        stopped = batchai(home, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not psutil.pid_exists(info["pid"]) or psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE
    assert batchai(home, "server", "status").returncode == 3


def test_one_server_per_home_and_a_stale_pid_file_names_nobody(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Two detached starts at the same moment: one server runs, the other start says why it did not.
    starts = [
        subprocess.Popen(
            [str(BIN / "batchai"), "server", "start", "--detach", "--port", "0"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("BATCHAI_")}, "BATCHAI_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(90), *p.communicate()) for p in starts]
    try:
        assert sorted(code for code, _, _ in results) == [0, 1], results
        refused = next(err for code, _, err in results if code)
        assert "a server already runs for home" in refused and "Traceback" not in refused
        pid = json.loads(next(out for code, out, _ in results if not code))["pid"]
        assert (home.stat().st_mode & 0o777) == 0o700  # (the database in it holds the jobs' secrets)
    finally:
        assert batchai(home, "server", "stop").returncode == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # A pid file left behind (a server killed, its pid since taken by another process) names nobody: status
    # and stop leave that process alone.
    other = subprocess.Popen(["sleep", "60"])
    try:
        (home / "server.pid").write_text(str(other.pid))
        assert batchai(home, "server", "status").returncode == 3
        assert one_error_line(batchai(home, "server", "stop")) == f"ERROR: no server runs for home {home}"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_two_homes_on_one_sqlite_database_do_not_both_run(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first = batchai(tmp_path / "one", "server", "start", "--detach", "--port", "0", "--database-url", shared)
    assert first.returncode == 0, first.stderr
    try:
        second = batchai(tmp_path / "two", "server", "start", "--port", "0", "--database-url", shared)
        assert one_error_line(second).startswith("ERROR: another batchai server runs on the database")
    finally:
        assert batchai(tmp_path / "one", "server", "stop").returncode == 0


def test_a_server_of_an_earlier_batchai_is_still_found_by_its_command_line(tmp_path: Path) -> None:
    """A server started before batchai took the home's lock (an upgrade while it runs) holds none: status and
    stop still find it, by its command line."""
    home = tmp_path / "home"
    home.mkdir()
    earlier = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "server", "start", "--home", str(home)]
    )
    try:
        (home / "server.pid").write_text(str(earlier.pid))
        status = batchai(home, "server", "status")
        assert status.returncode == 0 and json.loads(status.stdout)["pid"] == earlier.pid
        assert batchai(home, "server", "stop").returncode == 0
        assert earlier.wait(10) is not None
    finally:
        earlier.kill()
        earlier.wait()


def test_a_home_made_before_is_made_private_with_its_database_and_log(tmp_path: Path) -> None:
    """The database holds the jobs' secrets and the storage keys: a home another user may enter (made by hand,
    0755) is made 0700 at start, and the database and the log are the owner's alone whatever the umask."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    old = os.umask(0o022)
    try:
        started = batchai(home, "server", "start", "--detach", "--port", "0")
    finally:
        os.umask(old)
    assert started.returncode == 0, started.stderr
    try:
        modes = {
            p.name: p.stat().st_mode & 0o777 for p in [home, *home.iterdir()] if p.name.startswith(("home", "b", "s"))
        }
        assert modes["home"] == 0o700
        assert modes["batchai.db"] == modes["server.log"] == 0o600, modes
        assert all(modes[name] == 0o600 for name in modes if name.startswith("batchai.db-")), modes
    finally:
        assert batchai(home, "server", "stop").returncode == 0
