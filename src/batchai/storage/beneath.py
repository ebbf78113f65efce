"""Opening a path below a directory without ever leaving it, in one step.

Checking a path (``realpath``, ``is_symlink``) and then opening it leaves a gap in which a job can swap a
file or a folder on the way for a symbolic link to anywhere on the host. Here the kernel resolves the path
and opens it at once: Linux's ``openat2`` with ``RESOLVE_BENEATH`` (links that stay below the directory are
followed, none that leads out) or ``RESOLVE_NO_SYMLINKS`` (no link at all). Where the kernel has no
``openat2`` (before Linux 5.6, other systems) the path is walked one name at a time with ``O_NOFOLLOW``
from the directory's descriptor, following no link.

Everything is opened ``O_NONBLOCK``: opening a FIFO a job made must not block the server.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from pathlib import Path

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (a system call added after they were unified)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_has_openat2 = _libc is not None


def open_beneath(root: Path | str, rel: str, *, follow_links: bool) -> int:
    """A read-only descriptor of ``rel`` (a relative path of plain names; '' is ``root`` itself) below
    ``root``. ``follow_links``: links that stay below ``root`` are followed (where the kernel can tell; else
    none is); otherwise no link is. Raises OSError: ENOENT, ELOOP or EXDEV (the way leads out), ..."""
    parts = [part for part in rel.split("/") if part and part != "."]
    if ".." in parts:
        raise OSError(errno.EXDEV, "a path with '..' may lead out", rel)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            return _open(root_fd, parts, follow_links)
        except OSError as exc:
            if not follow_links or exc.errno not in (errno.EXDEV, errno.ELOOP, errno.ENOTDIR):
                raise
            # A link the kernel would not follow in one step (an absolute one, or any without openat2) may
            # still lead to a place below ``root``: open that place, below ``root`` again.
            real, base = os.path.realpath(os.path.join(root, *parts)), os.path.realpath(root)
            if real != base and not real.startswith(base + os.sep):
                raise
            return _open(root_fd, [p for p in os.path.relpath(real, base).split(os.sep) if p != "."], follow_links)
    finally:
        os.close(root_fd)


def _open(root_fd: int, parts: list[str], follow_links: bool) -> int:
    if not parts:
        return os.dup(root_fd)
    if _has_openat2:
        fd = _openat2(root_fd, "/".join(parts), follow_links)
        if fd is not None:
            return fd
    return _walk(root_fd, parts)


def open_regular(root: Path | str, rel: str, *, follow_links: bool) -> tuple[int, os.stat_result]:
    """``open_beneath`` for reading a file: the descriptor and its stat, if it is a regular file; raises
    OSError (EISDIR, ENXIO for a FIFO, a socket or a device) otherwise."""
    fd = open_beneath(root, rel, follow_links=follow_links)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.ENXIO, "not a regular file", rel)
    return fd, info


def _openat2(root_fd: int, rel: str, follow_links: bool) -> int | None:
    """The descriptor, or None if this kernel has no ``openat2``."""
    global _has_openat2
    assert _libc is not None
    resolve = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS | (0 if follow_links else _RESOLVE_NO_SYMLINKS)
    how = _OpenHow(_FLAGS, 0, resolve)
    fd = int(
        _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p(os.fsencode(rel)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd >= 0:
        return fd
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EPERM):  # no openat2 here (or a sandbox that forbids it): walk instead
        _has_openat2 = False
        return None
    raise OSError(code, os.strerror(code), rel)


def _walk(root_fd: int, parts: list[str]) -> int:
    """Open ``parts`` one at a time from ``root_fd``, following no link."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], _FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)
