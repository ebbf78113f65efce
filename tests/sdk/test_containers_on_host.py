"""The server setting the walkthroughs need: jobs that ask for a container image run on the host when the server
was started with --containers-on-host ($BATCHAI_CONTAINERS_ON_HOST=1), and each such job says so; off by
default, where no container engine runs they fail with ContainerEngineNotFound."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.integration.jobkit import make_bench

IMAGE = "microsoft/cntk:2.1-gpu-python3.5-cuda8.0-cudnn6.0"
CONTAINER = {"imageSourceRegistry": {"image": IMAGE}}


def container_engine_runs() -> bool:
    """As the server decides: docker or podman is installed and ``info`` succeeds."""
    for engine in ("docker", "podman"):
        binary = shutil.which(engine)
        if binary and subprocess.run([binary, "info"], capture_output=True, timeout=30).returncode == 0:
            return True
    return False


@pytest.mark.skipif(container_engine_runs(), reason="a container engine runs here")
def test_off_by_default_a_container_job_needs_a_container_engine(server: Server, tmp_path: Path) -> None:
    bench = make_bench(server, "rg-containers-off", tmp_path)
    bench.cluster()
    bench.submit("boxed", containerSettings=CONTAINER)
    props = bench.wait_job("boxed")
    assert props["executionState"] == "failed"
    assert [e["code"] for e in props["executionInfo"]["errors"]] == ["ContainerEngineNotFound"]


def test_containers_on_host_runs_the_job_here_and_says_so(host_server: Server, tmp_path: Path) -> None:
    bench = make_bench(host_server, "rg-containers-on", tmp_path)
    bench.cluster()
    bench.submit("boxed", containerSettings=CONTAINER, customToolkitSettings={"commandLine": "echo on-the-host"})
    bench.submit("plain", customToolkitSettings={"commandLine": "echo plain"})
    for name in ("boxed", "plain"):
        props = bench.wait_job(name)
        assert props["executionState"] == "succeeded", props
        assert "errors" not in props["executionInfo"]
    assert bench.job("boxed")["containerSettings"]["imageSourceRegistry"]["image"] == IMAGE  # kept as asked
    assert (bench.stdouterr("boxed") / "stdout.txt").read_text() == "on-the-host\n"
    boxed_log = (bench.stdouterr("boxed") / "execution.log").read_text()
    assert IMAGE in boxed_log and "host" in boxed_log, boxed_log
    assert "containerSettings" not in (bench.stdouterr("plain") / "execution.log").read_text()
