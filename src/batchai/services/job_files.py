"""Where a job's files are: stdout/stderr under ``{stdOutErrPathPrefix}/{segment}/stdouterr`` and each
output directory under ``{pathPrefix}/{segment}/{pathSuffix}`` (``outputs`` when it names none), on the
volumes the job mounts; and where a cluster's setup task output is.

A path such as ``$AZ_BATCHAI_JOB_MOUNT_ROOT/logs/x`` is resolved to the storage volume mounted at ``logs``
(job ``mountVolumes``; ``$AZ_BATCHAI_MOUNT_ROOT`` for the cluster's), so the server can list and serve
the files without asking a node. Any other absolute path is a path on the (local) node: this host.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from batchai.errors import InvalidInput, NotFound
from batchai.runtime.launch import output_suffix
from batchai.services.mounts import parse_file_url
from batchai.storage import beneath
from batchai.storage.base import Entry, InvalidPath, PathNotFound, StorageBackend, Volume, VolumeKind, clean_path
from batchai.store.tables import Cluster, Job

STDOUTERR = "stdouterr"
_VAR = re.compile(r"^\$(?:\{(?P<a>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT)\}|(?P<b>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT))(?=/|$)")


@dataclass(frozen=True)
class Location:
    """A directory of a job: ``path`` in a storage volume (``volume``), or on this host below ``host``.

    On this host, ``host`` is the folder the user named (a ``pathPrefix``) and ``path`` what lies below it,
    which the job made and may change at any time: it is only ever opened below ``host``, in one step
    and through no symbolic link (``storage.beneath``), as a job's links could point anywhere on the host."""

    volume: Volume | None = None
    path: str = ""
    host: Path | None = None

    def child(self, rel: str) -> Location:
        """The place ``rel`` below this one."""
        return Location(self.volume, "/".join(p for p in (self.path, clean_path(rel)) if p), self.host)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] if self.path else (self.host.name if self.host else "")

    @property
    def resource(self) -> str:
        """A stable text naming this place, used in signed download links."""
        if self.volume is not None:
            return f"v|{self.volume.account}|{self.volume.kind}|{self.volume.name}|{self.path}"
        return f"h|{self.host}\0{self.path}"  # (no path holds a NUL)


def parse_resource(resource: str) -> Location:
    kind, _, rest = resource.partition("|")
    if kind == "v":
        account, volume_kind, name, path = rest.split("|", 3)
        return Location(Volume(account, VolumeKind(volume_kind), name), path)
    if kind == "h" and "\0" in rest:
        root, _, path = rest.partition("\0")
        return Location(path=path, host=Path(root))
    raise InvalidInput("The link is malformed.", code="InvalidLink")


def _mount_volume(volumes: dict[str, Any] | None, name: str) -> Volume | None:
    for share in (volumes or {}).get("azureFileShares") or []:
        if clean_path(share["relativeMountPath"]) == name:
            account, share_name = parse_file_url(share["azureFileUrl"], "azureFileUrl")
            return Volume(account, VolumeKind.SHARE, share_name)
    for blob in (volumes or {}).get("azureBlobFileSystems") or []:
        if clean_path(blob["relativeMountPath"]) == name:
            return Volume(blob["accountName"], VolumeKind.CONTAINER, blob["containerName"])
    return None


def locate(path: str, job_volumes: dict[str, Any] | None, cluster_volumes: dict[str, Any] | None) -> Location | None:
    """Resolve a node path (``$AZ_BATCHAI_JOB_MOUNT_ROOT/logs/a/b``) to a Location, through the job's and the
    cluster's ``mountVolumes``; None if it cannot be resolved without running on a node (other variables, or
    a mount batchai cannot serve)."""
    match = _VAR.match(path)
    if match:
        var = match["a"] or match["b"]
        rest = clean_path(path[match.end() :].lstrip("/"))
        head, _, tail = rest.partition("/")
        volume = _mount_volume(job_volumes if var == "AZ_BATCHAI_JOB_MOUNT_ROOT" else cluster_volumes, head)
        return Location(volume, tail) if volume else None
    if path.startswith("/") and "$" not in path:
        return Location(host=Path(os.path.normpath(path)))  # (the user's folder: what the job makes is below)
    return None


def _cluster_volumes(cluster: Cluster | None) -> dict[str, Any] | None:
    return (cluster.spec.get("nodeSetup") or {}).get("mountVolumes") if cluster else None


def setup_output_of(cluster: Cluster, suffix: str) -> Location | None:
    """Where a cluster's setup task writes its output: ``{stdOutErrPathPrefix}/{suffix}``, a folder per node
    (``suffix``: the cluster's ``stdOutErrPathSuffix``). None if the cluster has no setup task."""
    setup = (cluster.spec.get("nodeSetup") or {}).get("setupTask")
    if not setup:
        return None
    base = locate(setup["stdOutErrPathPrefix"], None, _cluster_volumes(cluster))
    if base is None:
        raise InvalidInput(
            "The setup task's output is on the cluster's nodes, not on storage batchai serves: its "
            "stdOutErrPathPrefix must be an absolute path or under $AZ_BATCHAI_MOUNT_ROOT on a mounted share "
            "or container.",
            code="SetupOutputNotServed",
            target="stdOutErrPathPrefix",
        )
    return base.child(suffix)


def directory_of(job: Job, cluster: Cluster | None, directory_id: str) -> Location | None:
    """The Location of ``stdouterr`` or of an output directory id (case-insensitive)."""
    segment = job.output_segment
    if directory_id.lower() == STDOUTERR:
        base = locate(job.spec["stdOutErrPathPrefix"], job.spec.get("mountVolumes"), _cluster_volumes(cluster))
        return base.child(f"{segment}/{STDOUTERR}") if base else None
    for output in job.spec.get("outputDirectories") or []:
        if output["id"].lower() == directory_id.lower():
            base = locate(output["pathPrefix"], job.spec.get("mountVolumes"), _cluster_volumes(cluster))
            suffix = output_suffix(output).strip("/")
            return base.child("/".join(p for p in (segment, suffix) if p)) if base else None
    raise NotFound(
        f"The job has no output directory '{directory_id}'; its ids are: "
        + ", ".join([STDOUTERR] + [o["id"] for o in job.spec.get("outputDirectories") or []]),
        code="OutputDirectoryNotFound",
        target="outputdirectoryid",
    )


def names_in(storage: StorageBackend, location: Location) -> list[str]:
    """The names directly in a Location, sorted, each not looked at yet (``entries_in``); a directory not created
    yet lists as empty."""
    if location.volume is not None:
        try:
            return storage.names(location.volume, location.path)
        except PathNotFound:
            return []
    with _host_dir(location) as fd:
        if fd is None:
            return []
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name for e in entries)
        except NotADirectoryError:
            return []


def entries_in(storage: StorageBackend, location: Location, names: list[str]) -> list[Entry]:
    """The files and directories among ``names`` in a Location (in that order): what is gone meanwhile, is
    neither (a FIFO, a socket, a device; on this host also a link, which may point anywhere), or has a name
    the API cannot show, is left out."""
    out = []
    if location.volume is not None:
        for name in names:
            try:
                name.encode()
                out.append(storage.stat(location.volume, f"{location.path}/{name}" if location.path else name))
            except (UnicodeEncodeError, PathNotFound, InvalidPath):
                continue
        return out
    with _host_dir(location) as fd:
        for name in names if fd is not None else []:
            try:
                name.encode()
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (UnicodeEncodeError, OSError):
                continue
            if (entry := Entry.of(info, name)) is not None:
                out.append(entry)
    return out


@contextlib.contextmanager
def _host_dir(location: Location) -> Iterator[int | None]:
    """A Location's directory on this host, opened below its folder through no link (None: not made yet)."""
    assert location.host is not None
    try:
        fd = beneath.open_beneath(location.host, location.path, follow_links=False)
    except FileNotFoundError:  # not made yet
        yield None
        return
    except OSError as exc:  # a link on the way (which may point anywhere on the host), or a file
        raise NotFound(
            f"'{location.name}' is not a directory of the job's output.", code="PathNotFound", target="path"
        ) from exc
    try:
        yield fd
    finally:
        os.close(fd)


def open_host_file(location: Location) -> tuple[BinaryIO, int]:
    """A job's file on this host, opened for a download link, and its size: a regular file, opened below its
    folder through no symbolic link (which the job may have made, or swapped in, to point anywhere)."""
    assert location.host is not None
    try:
        fd, info = beneath.open_regular(location.host, location.path, follow_links=False)
    except OSError as exc:  # gone, a link on the way, or not a regular file
        raise NotFound("The file no longer exists.", target="r") from exc
    return os.fdopen(fd, "rb"), info.st_size
