"""A throwaway PostgreSQL server for tests: ``postgres_url`` starts one per session and yields its SQLAlchemy URL.

The server runs from the PostgreSQL binaries on this machine (``initdb`` on ``PATH`` or Debian's
``/usr/lib/postgresql/<version>/bin``), as the ``postgres`` OS user when we are root (PostgreSQL refuses to run as
root), with its data directory and unix socket in a temporary directory, listening on 127.0.0.1 only, with trust
authentication and fsync off. Its time zone is deliberately not UTC, so that code which assumes the database
hands back UTC times is caught. It is stopped (``pg_ctl stop -m immediate``) and its directory removed at the end.

Without any ``initdb`` the tests that use it are skipped, unless ``CI`` is set: then they fail, so that a CI
machine without PostgreSQL cannot pass silently.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, wait_for

OS_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "batchai"
# Not UTC and not a whole hour away from it: a time that comes back in the session's zone shows.
TIME_ZONE = "Asia/Kolkata"
INSTALL_HINT = "install PostgreSQL (Debian: apt-get install -y postgresql)"


def find_bin_dir() -> Path | None:
    """The directory of the newest PostgreSQL server binaries: ``initdb`` on PATH, else Debian's layout."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


@dataclass
class PgServer:
    """One PostgreSQL server in ``root`` (``data``, ``socket`` and ``server.log`` inside)."""

    bin_dir: Path
    root: Path
    port: int = 0
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool, as the ``postgres`` OS user when we are root; fail the test on error."""
        command = [str(self.bin_dir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        # The tools look at their working directory: give them one the postgres user may enter.
        proc = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise AssertionError(
                f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}".rstrip()
            )
        return proc

    def prepare(self) -> None:
        self.root.chmod(0o755)
        self.socket_dir.mkdir()
        if self.as_root:
            try:
                user = pwd.getpwnam(OS_USER)
            except KeyError:
                pytest.fail(f"running as root needs the '{OS_USER}' OS user to run PostgreSQL: {INSTALL_HINT}")
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/pg.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                f"timezone = '{TIME_ZONE}'\n"
            )

    def start(self, attempts: int = 3) -> None:
        """Start on a free port (another free one if it was taken meanwhile) and wait until it accepts."""
        for attempt in range(attempts):
            self.port, self.pid = free_port(), None
            try:
                self.run(
                    "pg_ctl",
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log),
                    "--wait",
                    "--timeout=60",
                    "-o",
                    f"-p {self.port} -c fsync=off",
                    "start",
                )
                break
            except AssertionError:
                self.kill()
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                if attempt == attempts - 1 or "could not bind" not in log:
                    raise
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        wait_for(lambda: self.ready(), timeout=30, message="PostgreSQL to accept connections")

    def ready(self) -> bool:
        try:
            self.run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, timeout=10)
        except AssertionError:
            return False
        return True

    def create_database(self, name: str = DATABASE) -> None:
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)

    def processes(self) -> list[psutil.Process]:
        """The postmaster of ``data`` and its children; none once it is gone (or its pid names another process)."""
        with contextlib.suppress(ValueError, IndexError, OSError):
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        if self.pid is None:
            return []
        try:
            postmaster = psutil.Process(self.pid)
            # The postmaster works in its data directory (whatever its command line says).
            if Path(postmaster.cwd()).resolve() != self.data.resolve():
                return []
            return [postmaster, *postmaster.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
            return []

    def stop(self) -> list[psutil.Process]:
        """Stop at once (``pg_ctl stop -m immediate``); SIGKILL whatever still runs 10 s later and return it."""
        processes = self.processes()
        if processes or (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.run("pg_ctl", "--pgdata", str(self.data), "--mode=immediate", "--wait", "stop", timeout=60)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not running(processes), timeout=10, message="PostgreSQL to exit")
        return self.kill(processes)

    def kill(self, processes: list[psutil.Process] | None = None) -> list[psutil.Process]:
        """SIGKILL the given processes (default: the postmaster and its children) by pid; return those that ran."""
        alive = running(self.processes() if processes is None else processes)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        wait_for(lambda: not running(alive), timeout=10, message="killed PostgreSQL processes to exit")
        return alive


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` that still run (a zombie, or a reused pid, does not count)."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


@contextlib.contextmanager
def running_postgres() -> Iterator[PgServer]:
    """A started PostgreSQL server with an empty ``batchai`` database; stopped and removed on exit."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = f"PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    # Not pytest's tmp_path: that lives under a root-only directory the postgres user cannot enter.
    server = PgServer(bin_dir=bin_dir, root=Path(tempfile.mkdtemp(prefix="batchai-pg-")))
    try:
        server.prepare()
        server.start()
        server.create_database()
        yield server
    finally:
        survivors = server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        assert not survivors, f"PostgreSQL processes outlived pg_ctl stop (killed): {[p.pid for p in survivors]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (see ``running_postgres``)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PgServer) -> str:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT/batchai`` of the session's PostgreSQL server."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.fail("the PostgreSQL driver is missing: pip install -e '.[postgres]' (psycopg[binary])")
    return postgres_server.url()
