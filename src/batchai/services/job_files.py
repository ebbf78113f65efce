"""Where a job's files are: stdout/stderr under ``{stdOutErrPathPrefix}/{segment}/stdouterr`` and each
output directory under ``{pathPrefix}/{segment}/{pathSuffix}`` (``outputs`` when it names none), on the
volumes the job mounts; and where a cluster's setup task output is.

A path such as ``$AZ_BATCHAI_JOB_MOUNT_ROOT/logs/x`` is resolved to the storage volume mounted at ``logs``
(job ``mountVolumes``; ``$AZ_BATCHAI_MOUNT_ROOT`` for the cluster's), so the server can list and serve
the files without asking a node. Any other absolute path is a path on the (local) node: this host.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from batchai.errors import InvalidInput, NotFound
from batchai.runtime.launch import output_suffix
from batchai.services.mounts import parse_file_url
from batchai.storage.base import Entry, PathNotFound, Volume, VolumeKind, clean_path
from batchai.store.tables import Cluster, Job

STDOUTERR = "stdouterr"
_VAR = re.compile(r"^\$(?:\{(?P<a>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT)\}|(?P<b>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT))(?=/|$)")


@dataclass(frozen=True)
class Location:
    """A directory of a job: on a storage volume (``volume``, ``path``), or on this host (``host``)."""

    volume: Volume | None = None
    path: str = ""
    host: Path | None = None

    def child(self, rel: str) -> Location:
        """The place ``rel`` below this one; on this host never through a symbolic link (a job's links could
        point anywhere on the host)."""
        rel = clean_path(rel)
        if self.volume is not None:
            return Location(self.volume, "/".join(p for p in (self.path, rel) if p))
        assert self.host is not None
        path = self.host
        for part in rel.split("/") if rel else []:
            path = path / part
            if path.is_symlink():
                raise NotFound(f"'{rel}' is not a directory of the job's output.", code="PathNotFound", target="path")
        return Location(host=path)

    @property
    def resource(self) -> str:
        """A stable text naming this place, used in signed download links."""
        if self.volume is not None:
            return f"v|{self.volume.account}|{self.volume.kind}|{self.volume.name}|{self.path}"
        return f"h|{self.host}"


def parse_resource(resource: str) -> Location:
    kind, _, rest = resource.partition("|")
    if kind == "v":
        account, volume_kind, name, path = rest.split("|", 3)
        return Location(Volume(account, VolumeKind(volume_kind), name), path)
    if kind == "h":
        return Location(host=Path(rest))
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
        return Location(host=Path(os.path.normpath(path)))
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


def list_location(storage: Any, location: Location) -> list[Entry]:
    """Entries directly in a Location; a directory not created yet lists as empty."""
    if location.volume is not None:
        try:
            return list(storage.list(location.volume, location.path))
        except PathNotFound:
            return []
    assert location.host is not None
    if not location.host.is_dir():
        return []
    out = []
    for child in sorted(location.host.iterdir()):
        if child.is_symlink():  # not served: it may point anywhere on the host (storage volumes hide them too)
            continue
        try:
            child.name.encode()
        except UnicodeEncodeError:  # not UTF-8: not a name the API can show
            continue
        try:
            st = child.stat()
        except FileNotFoundError:
            continue
        out.append(
            Entry(
                path=child.name,
                is_directory=child.is_dir(),
                size=0 if child.is_dir() else st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime, UTC),
            )
        )
    return out


def open_host_file(path: Path) -> tuple[BinaryIO, int]:
    """A job's file on this host, opened for a download link, and its size: a regular file, never through a
    symbolic link (which the job may have made to point anywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:  # gone, or a link (ELOOP)
        raise NotFound("The file no longer exists.", target="r") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotFound("The file no longer exists.", target="r")
    return os.fdopen(fd, "rb"), info.st_size
