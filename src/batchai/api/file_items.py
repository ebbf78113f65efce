"""The File items of a folder on storage or on this host, each file with a signed link that expires: what a
job's ``listOutputFiles`` and a cluster's setup task output listing answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from batchai.api import links
from batchai.api.deps import page_window, paged, run
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
) -> JSONResponse:
    """The page the request asks for (``page_window``) of the items of ``directory`` under the folder
    ``folder_of`` finds (None: there is nothing to list), with ``isDirectory`` added for the api versions
    before 2018-05-01. Only the page's entries are looked at and signed, so that paging through a folder of
    many files costs each page the same. An entry that is not served (a link, a FIFO, a name no link can
    carry) makes its page shorter."""
    if not 5 <= linkexpiryinminutes <= 600:
        raise InvalidInput("linkexpiryinminutes must be between 5 and 600.", target="linkexpiryinminutes")
    skip, size = page_window(request)
    state = request.app.state
    expiry = int(state.clock().timestamp()) + 60 * linkexpiryinminutes
    endpoint = str(request.base_url).rstrip("/")

    def work(ctx: Ctx) -> tuple[list[dict[str, Any]], bool]:
        base = folder_of(ctx)
        if base is None:
            return [], False
        folder = base.child(directory)
        names = job_files.names_in(ctx.storage, folder)
        out = []
        for entry in job_files.entries_in(ctx.storage, folder, names[skip : skip + size]):
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
        return out, skip + size < len(names)

    items, more = run(request, work)
    return paged(request, items, more)
