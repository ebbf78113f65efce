"""The File items of a folder on storage or on this host, each file with a signed link that expires: what a
job's ``listOutputFiles`` and a cluster's setup task output listing answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request

from batchai.api import links
from batchai.api.deps import run
from batchai.errors import InvalidInput
from batchai.services import job_files
from batchai.services.context import Ctx
from batchai.services.job_files import Location
from batchai.storage.base import InvalidPath, shown

log = logging.getLogger("batchai.api")


def signed_files(
    request: Request,
    folder_of: Callable[[Ctx], Location | None],
    directory: str,
    linkexpiryinminutes: int,
    with_is_directory: bool = False,
) -> list[dict[str, Any]]:
    """The items of ``directory`` under the folder ``folder_of`` finds (None: there is nothing to list), with
    ``isDirectory`` added for the api versions before 2018-05-01."""
    if not 5 <= linkexpiryinminutes <= 600:
        raise InvalidInput("linkexpiryinminutes must be between 5 and 600.", target="linkexpiryinminutes")
    state = request.app.state
    expiry = int(state.clock().timestamp()) + 60 * linkexpiryinminutes
    endpoint = str(request.base_url).rstrip("/")

    def work(ctx: Ctx) -> list[dict[str, Any]]:
        base = folder_of(ctx)
        if base is None:
            return []
        folder = base.child(directory)
        out = []
        for entry in job_files.list_location(ctx.storage, folder):
            try:
                place = folder.child(entry.name)
            except InvalidPath:  # a name no link can carry (a '\\' in it): left out, not the whole list
                log.info("not listed: '%s' in %s (%s)", shown(entry.name), folder.name, "a name links cannot carry")
                continue
            item: dict[str, Any] = {
                "name": entry.name,
                "fileType": "directory" if entry.is_directory else "file",
                "properties": {
                    "lastModified": entry.modified.isoformat().replace("+00:00", "Z"),
                    "contentLength": entry.size,
                },
            }
            if with_is_directory:
                item["isDirectory"] = entry.is_directory
            if not entry.is_directory:
                item["downloadUrl"] = links.sign(state.signing_key, endpoint, place.resource, entry.name, expiry)
            out.append(item)
        return out

    return run(request, work)
