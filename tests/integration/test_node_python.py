"""Each local node has its own Python environment: what a setup task or a job preparation installs with pip
stays on that node for its later jobs, and never reaches the server's environment or another cluster's nodes."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import jmespath
import pytest

from tests.conftest import Server
from tests.integration.jobkit import Bench, make_bench


@pytest.fixture
def bench(server: Server, tmp_path: Path) -> Bench:
    return make_bench(server, "nodepy.rg", tmp_path)


def wheel(directory: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of one module that knows its version (pip installs it offline: --no-index)."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {k: base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=") for k, v in files.items()}
    record = [f"{k},sha256={digest[k].decode()},{len(v.encode())}" for k, v in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def server_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_what_a_node_installs_stays_on_that_node(bench: Bench) -> None:
    # First, that pip and python on a node are its own: were they the server's, what follows would install into
    # the server's environment (this test's too).
    bench.cluster("other")
    bench.submit("which", cluster="other", customToolkitSettings={"commandLine": "command -v pip python"})
    props = bench.wait_job("which")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    found = (bench.stdouterr("which") / "stdout.txt").read_text().split()
    assert len(found) == 2 and all(p.startswith(str(bench.server.home)) for p in found), found

    tiny = wheel(bench.tmp, "batchai_tiny_pkg", "1.0")
    shadow = wheel(bench.tmp, "jmespath", "99.0")  # a newer version of a package the server has
    install = "pip install --no-index --no-deps --quiet"
    setup = {"commandLine": f"{install} {shadow}", "stdOutErrPathPrefix": str(bench.tmp / "setup")}
    bench.cluster("c", nodeSetup={"setupTask": setup})
    bench.wait_nodes("c", idle=1)

    show = "import batchai_tiny_pkg as t, jmespath as j, httpx, sys; print(t.__version__, j.__version__, sys.prefix)"
    bench.submit(
        "prep",
        jobPreparation={"commandLine": f"{install} {tiny}"},
        customToolkitSettings={"commandLine": f'python -c "{show}"'},
    )
    props = bench.wait_job("prep")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    tiny_version, shadow_version, prefix = (bench.stdouterr("prep") / "stdout.txt").read_text().split()
    # The node's environment has both, and what the server has too (httpx); it lies in the node's work area.
    assert (tiny_version, shadow_version) == ("1.0", "99.0")
    assert prefix.startswith(str(bench.server.home)) and prefix.endswith("/python")

    # A later job on that node, by a toolkit's default Python, still has what the preparation installed.
    script = bench.tmp / "later.py"
    script.write_text("import batchai_tiny_pkg, sys\nprint(batchai_tiny_pkg.__version__, sys.prefix)\n")
    bench.submit("later", pyTorchSettings={"pythonScriptFilePath": str(script)})
    props = bench.wait_job("later")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    assert (bench.stdouterr("later") / "stdout.txt").read_text().split() == ["1.0", prefix]

    # Another cluster's node has neither, and sees the server's own version of the shadowed package.
    check = "import importlib.util as u, jmespath; print(u.find_spec('batchai_tiny_pkg') is None, jmespath.__version__)"
    bench.submit("elsewhere", cluster="other", customToolkitSettings={"commandLine": f'python -c "{check}"'})
    props = bench.wait_job("elsewhere")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    assert (bench.stdouterr("elsewhere") / "stdout.txt").read_text().split() == ["True", jmespath.__version__]

    # The server's environment is as it was.
    assert server_python(check).stdout.split() == ["True", jmespath.__version__]


def test_a_restarted_server_points_its_nodes_at_its_own_environment(bench: Bench) -> None:
    """As after batchai was reinstalled in another virtual environment: the nodes' site file names the
    server's site directories again, and what was installed on the node stays."""
    bench.cluster()
    bench.wait_nodes(idle=1)
    (site_file,) = (bench.server.home / "nodes").rglob("batchai-server-site.pth")
    current = site_file.read_text()
    bench.server.stop()
    site_file.write_text("import site; site.addsitedir('/gone/venv/lib/python3.11/site-packages')\n")
    (site_file.parent / "installed_on_the_node.py").write_text("")
    bench.server.start()
    assert site_file.read_text() == current
    bench.submit("job", customToolkitSettings={"commandLine": 'python -c "import httpx, installed_on_the_node"'})
    props = bench.wait_job("job")
    assert props["executionState"] == "succeeded", props["executionInfo"]
