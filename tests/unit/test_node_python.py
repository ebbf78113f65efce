"""A node's own Python environment (runtime.node_python): made whole or made again, and what it puts first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from batchai.runtime import node_python


def test_a_node_environment_sees_the_servers_packages_and_is_first_on_path(tmp_path: Path) -> None:
    node_python.create(tmp_path)
    python = node_python.python_of(tmp_path, "fallback")
    assert python == str(tmp_path / "python" / "bin" / "python")
    env = node_python.environment(tmp_path, "/usr/bin")
    assert env == {"VIRTUAL_ENV": str(tmp_path / "python"), "PATH": f"{tmp_path / 'python' / 'bin'}:/usr/bin"}
    # No PATH at all: the system's default search path follows it (bash and the like stay found).
    assert node_python.environment(tmp_path, "")["PATH"] == f"{tmp_path / 'python' / 'bin'}:{os.defpath}"
    out = subprocess.run(
        [python, "-c", "import sys, httpx, batchai; print(sys.prefix)"], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == str(tmp_path / "python"), out.stderr
    pip = subprocess.run([tmp_path / "python" / "bin" / "pip", "--version"], capture_output=True, text=True, timeout=60)
    assert pip.returncode == 0 and "pip" in pip.stdout, pip.stderr


def test_a_half_made_environment_is_not_used_and_is_made_again(tmp_path: Path) -> None:
    node_python.create(tmp_path)
    marker = next((tmp_path / "python").rglob("batchai-server-site.pth"))
    marker.unlink()  # as if the server died while making it
    assert node_python.python_of(tmp_path, sys.executable) == sys.executable
    assert node_python.environment(tmp_path, "/usr/bin") == {}
    node_python.create(tmp_path)
    assert marker.exists() and node_python.python_of(tmp_path, "fallback") != "fallback"


def test_a_node_environment_follows_the_server_to_its_new_site_directories(tmp_path: Path) -> None:
    node_python.create(tmp_path)
    site_file = next((tmp_path / "python").rglob("batchai-server-site.pth"))
    current = site_file.read_text()
    site_file.write_text("import site; site.addsitedir('/gone/venv/lib/python3.11/site-packages')\n")
    installed = site_file.parent / "installed_on_the_node.py"
    installed.write_text("")
    node_python.refresh(tmp_path)
    assert site_file.read_text() == current and installed.exists()  # what the node installed stays
    node_python.refresh(tmp_path / "nothing")  # a node without an environment: nothing to do
    assert not (tmp_path / "nothing").exists()


def test_a_node_environment_whose_interpreter_is_gone_is_made_over_the_servers_keeping_its_packages(
    tmp_path: Path,
) -> None:
    node_python.create(tmp_path)
    directory = tmp_path / "python"
    site_file = next(directory.rglob("batchai-server-site.pth"))
    (site_file.parent / "installed_on_the_node.py").write_text("WHERE = 'node'\n")
    # As if the server's Python was upgraded in place and the old one removed: the links point at nothing.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (directory / "bin" / version).unlink()
    (directory / "bin" / version).symlink_to(tmp_path / "gone" / "bin" / version)
    cfg = directory / "pyvenv.cfg"
    home = f"home = {Path(getattr(sys, '_base_executable', sys.executable)).parent}"
    assert home in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(home, f"home = {tmp_path / 'gone'}"))
    python = node_python.python_of(tmp_path, "fallback")
    assert not Path(python).exists()  # (a link to nothing: the node's jobs could not start)

    node_python.refresh(tmp_path)
    out = subprocess.run(
        [python, "-c", "import sys, batchai, installed_on_the_node as m; print(sys.prefix, m.WHERE)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == [str(directory), "node"], out.stderr
    assert str(tmp_path / "gone") not in cfg.read_text()
    pip = subprocess.run([directory / "bin" / "pip", "--version"], capture_output=True, text=True, timeout=60)
    assert pip.returncode == 0, pip.stderr
