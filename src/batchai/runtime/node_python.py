"""A local node's own Python environment, as a Batch AI node (a VM) had its own: what a setup task or a job
preparation installs with ``pip`` (or ``uv pip``) goes into that node's environment, for its later jobs, and
never into the server's. It is a virtual environment over the server's interpreter that sees every package the
server's environment has (its site directories are added as ``site`` adds them, so ``.pth`` files and editable
installs work too): a job imports what the server has installed (torch for the sample), and a newer version
installed on the node shadows it there only. It goes with the node's work area."""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
import venv
from pathlib import Path
from typing import Any

_DIR = "python"  # in the node's work area
_PTH = "batchai-server-site.pth"


def env_dir(node_dir: Path) -> Path:
    return node_dir / _DIR


def python_of(node_dir: Path, fallback: str) -> str:
    """The Python the node's jobs run with when they name none: its environment's, or ``fallback`` for a node
    that has none (made by an earlier version, or a Ray node)."""
    directory = env_dir(node_dir)
    return str(directory / "bin" / "python") if _ready(directory) else fallback


def environment(node_dir: Path, path: str) -> dict[str, str]:
    """The variables that put the node's environment first (as its ``activate`` would), given the ``PATH``
    the node's processes get otherwise (none: the system's default search path); nothing when the node has
    none."""
    directory = env_dir(node_dir)
    if not _ready(directory):
        return {}
    return {"VIRTUAL_ENV": str(directory), "PATH": os.pathsep.join((str(directory / "bin"), path or os.defpath))}


def create(node_dir: Path) -> None:
    """Make the node's environment unless it is there (idempotent; one left half-made is made again). Raises
    OSError if it cannot be made."""
    directory = env_dir(node_dir)
    if not _ready(directory):
        _Builder(symlinks=True, with_pip=False, clear=True).create(str(directory))


def refresh(node_dir: Path) -> None:
    """Bring the node's environment to the server of now, keeping what was installed on the node: over the
    server's interpreter, should that have changed (Python upgraded or moved: the old one may be gone), and
    pointed at the server's site directories, should they have moved (the server reinstalled in another
    virtual environment). Nothing for a node without one. Called at start, before the node runs anything new;
    a job still running there from before goes on with the interpreter it has."""
    directory = env_dir(node_dir)
    if not (directory / "pyvenv.cfg").is_file():
        return
    if not _over_this_interpreter(directory):
        # venv's upgrade makes pyvenv.cfg and the missing links again and leaves the packages where they are (a
        # newer minor version gets its own site-packages: what was built for the old one would not load).
        for link in (directory / "bin").glob("python*"):
            if link.is_symlink():
                link.unlink()  # (venv keeps a link that is there, even one to nothing)
        _Builder(symlinks=True, with_pip=False, upgrade=True).create(str(directory))
        _complete(directory)
        return
    site_file, text = _site_file(directory), _site_text()
    if site_file.exists() and site_file.read_text() != text:
        new = site_file.with_name(site_file.name + ".new")  # (not a .pth: site skips it)
        new.write_text(text)
        os.replace(new, site_file)  # a process starting meanwhile reads the old one or the new one


def _over_this_interpreter(directory: Path) -> bool:
    """Whether the environment's ``python`` is the server's interpreter (the one its virtual environment, if
    any, is over)."""
    base = getattr(sys, "_base_executable", sys.executable)  # (what venv makes environments over)
    try:
        return (directory / "bin" / "python").resolve(strict=True) == Path(base).resolve(strict=True)
    except OSError:  # (a link to an interpreter that is gone)
        return False


def _site_file(directory: Path) -> Path:
    """The ``.pth`` file that adds the server's site directories: written last, so it marks a whole one."""
    return directory / _site_packages() / _PTH


@functools.cache
def _site_packages() -> Path:
    """Where a virtual environment's packages go, relative to it (``lib/python3.11/site-packages``); asked once,
    as it is looked at for each job."""
    return Path(sysconfig.get_path("purelib", "venv", {"base": "/env", "platbase": "/env"})).relative_to("/env")


def _site_text() -> str:
    return "".join(f"import site; site.addsitedir({d!r})\n" for d in server_site_dirs())


def _ready(directory: Path) -> bool:
    return _site_file(directory).exists()


class _Builder(venv.EnvBuilder):
    def post_setup(self, context: Any) -> None:
        _complete(Path(context.env_dir))


def _complete(directory: Path) -> None:
    """``pip`` as the server's run by the node's interpreter (so that it installs there; no copy of pip per
    node), then the server's site directories (the file that marks the environment whole)."""
    for name in ("pip", "pip3", f"pip{sys.version_info.major}.{sys.version_info.minor}"):
        shim = directory / "bin" / name
        shim.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
        shim.chmod(0o755)
    _site_file(directory).write_text(_site_text())


def server_site_dirs() -> list[str]:
    """The site directories of the server's interpreter, in its order (its user site too, when it uses one)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if Path(d).is_dir()]
