"""Fixtures for the official Azure SDK tests: one virtual environment per SDK version, and servers for them.

The SDK versions conflict as dependencies, so each gets its own virtual environment, made on first use with
``python -m venv`` and pip (from the package registry) under ``<repo>/.sdk-venvs/`` (or
``$BATCHAI_SDK_VENVS``) and kept for later runs: its name holds a hash of what it installs and of
``pyproject.toml``, so a change to either makes a new one. batchai itself is installed in it (editable, with
its dependencies) for ``batchai.sdk`` and the ``batchai`` CLI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, assert_nothing_left, free_port

REPO = Path(__file__).resolve().parents[2]
WALKTHROUGHS = Path(__file__).resolve().parent / "walkthroughs"
INSTALL_TIMEOUT = 900
READY = "batchai-sdk-env.json"  # written last: the environment is complete

# What each SDK environment installs besides batchai. The SDK packages are pinned with what they need from
# Azure, so a new release elsewhere cannot change what the tests exercise.
SDKS: dict[str, list[str]] = {
    # azure-core based; 7.0.0 imports msrest without declaring it.
    "7.0.0": [
        "azure-mgmt-batchai==7.0.0",
        "msrest==0.7.1",
        "azure-mgmt-resource==23.1.1",
        "azure-mgmt-core==1.6.0",
        "azure-core==1.41.0",
        "isodate==0.7.2",
    ],
    # msrest based, as the seed walkthrough was written for; azure-mgmt-resource 10.x is the last of that kind.
    "2.0.0": [
        "azure-mgmt-batchai==2.0.0",
        "azure-mgmt-resource==10.3.0",
        "msrestazure==0.6.4.post1",
        "msrest==0.7.1",
        "adal==1.2.7",
        "isodate==0.7.2",
    ],
    # The SDKs of api-versions 2018-03-01 (1.0.1) and 2017-09-01-preview (0.2.0): no workspaces or experiments.
    # 1.0.1's models take keyword arguments only; 0.2.0's (positional) need msrestazure 0.4.
    "1.0.1": [
        "azure-mgmt-batchai==1.0.1",
        "azure-mgmt-resource==10.3.0",
        "msrestazure==0.6.4.post1",
        "msrest==0.7.1",
        "adal==1.2.7",
        "isodate==0.7.2",
    ],
    "0.2.0": [
        "azure-mgmt-batchai==0.2.0",
        "azure-mgmt-resource==10.3.0",
        "msrestazure==0.4.34",
        "msrest==0.7.1",
        "adal==1.2.7",
        "isodate==0.7.2",
    ],
}


@dataclass(frozen=True)
class SdkEnv:
    """A virtual environment with one version of azure-mgmt-batchai and batchai."""

    version: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(
        self, script: str, *args: str, server: Server, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a walkthrough script with this environment's python against ``server``."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_", "PYTHON"))}
        environ.update(
            {
                "BATCHAI_ENDPOINT": server.endpoint,
                "BATCHAI_TOKEN": server.token,
                "BATCHAI_HOME": str(server.home.parent / "client-home"),  # nothing there: the variables decide
            }
        )
        environ.update(env or {})
        environ = {k: v for k, v in environ.items() if v}  # an empty value removes a variable
        return subprocess.run(
            [str(self.python), str(WALKTHROUGHS / script), *args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=str(WALKTHROUGHS),
            timeout=timeout,
        )


def venvs_root() -> Path:
    return Path(os.environ.get("BATCHAI_SDK_VENVS") or REPO / ".sdk-venvs")


def env_name(version: str) -> str:
    """``azure-mgmt-batchai-7.0.0-<hash>``: the hash covers the requirements, batchai's pyproject.toml and where
    this checkout is (batchai is installed editable from it)."""
    key = json.dumps([SDKS[version], str(REPO)]).encode() + (REPO / "pyproject.toml").read_bytes()
    digest = hashlib.sha256(key)
    return f"azure-mgmt-batchai-{version}-{digest.hexdigest()[:10]}"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock (two test runs at once make an environment once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_env(version: str) -> SdkEnv:
    """The environment for ``version``, made (once, under a lock) if it is not there yet."""
    root = venvs_root()
    name = env_name(version)
    path = root / name
    ready = path / READY
    with locked(root / f"{name}.lock"):
        if ready.exists() and (path / "bin" / "python").exists():
            return SdkEnv(version, path)
        shutil.rmtree(path, ignore_errors=True)  # a half-made one
        for stale in root.glob(f"azure-mgmt-batchai-{version}-*/{READY}"):  # this checkout's, for older settings
            if json.loads(stale.read_text()).get("repo") == str(REPO):
                shutil.rmtree(stale.parent, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        command = [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *SDKS[version],
            "-e",
            str(REPO),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        if result.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            pytest.fail(f"could not make the SDK {version} environment ({' '.join(command)}):\n{result.stderr[-4000:]}")
        ready.write_text(json.dumps({"version": version, "requirements": SDKS[version], "repo": str(REPO)}))
        return SdkEnv(version, path)


@pytest.fixture(scope="session")
def sdk_env() -> Callable[[str], SdkEnv]:
    """``sdk_env("7.0.0")``: the environment of that SDK version, made on first use in the session."""
    made: dict[str, SdkEnv] = {}

    def get(version: str) -> SdkEnv:
        if version not in made:
            made[version] = make_env(version)
        return made[version]

    return get


def server_supports_containers_on_host() -> bool:
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "batchai"), "server", "start", "--help"], capture_output=True, text=True
    ).stdout
    return "--containers-on-host" in help_text


@pytest.fixture
def host_server(tmp_path: Path) -> Iterator[Server]:
    """A server that runs container jobs on the host ($BATCHAI_CONTAINERS_ON_HOST), as the walkthroughs need:
    their job asks for a CNTK image and no container engine runs here."""
    if not server_supports_containers_on_host():
        pytest.fail("this batchai server has no --containers-on-host setting (BATCHAI_CONTAINERS_ON_HOST)")
    srv = Server(home=tmp_path / "home", port=free_port(), env={"BATCHAI_CONTAINERS_ON_HOST": "1"})
    srv.home.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        assert_nothing_left(srv.home)
