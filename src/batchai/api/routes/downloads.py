"""Signed download links: no token needed, the signature and expiry time are the authority."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from batchai.api import links
from batchai.api.deps import run
from batchai.errors import InvalidInput
from batchai.services.job_files import open_host_file, parse_resource
from batchai.storage.base import InvalidPath, iter_file, size_of

router = APIRouter(tags=["downloads"])


@router.get("/download/{name}")
def download(name: str, r: str, se: str, sig: str, request: Request) -> Response:
    """The file a signed link names; ``{name}`` is not signed, so the file's own name is the one it is sent as."""
    state = request.app.state
    location = parse_resource(links.verify(state.signing_key, r, se, sig, state.clock().timestamp()))
    filename = location.name
    if location.volume is not None:
        volume, path = location.volume, location.path
        try:
            handle = run(request, lambda ctx: ctx.storage.open(volume, path))
        except InvalidPath as exc:  # a directory
            raise InvalidInput("The link names a directory.", target="r") from exc
        size = size_of(handle)
    else:
        handle, size = open_host_file(location)
    headers = {"Content-Disposition": content_disposition(filename), "Accept-Ranges": "bytes"}
    start = _range_start(request.headers.get("range"), size)
    if start is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(iter_file(handle), media_type="application/octet-stream", headers=headers)
    if start >= size:  # nothing from there on (RFC 9110: 416, with the size)
        handle.close()
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    handle.seek(start)
    headers["Content-Length"] = str(size - start)
    headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    return StreamingResponse(iter_file(handle), status_code=206, media_type="application/octet-stream", headers=headers)


def content_disposition(filename: str) -> str:
    """``attachment`` with the name as RFC 6266 gives it: an ASCII fallback (anything else, quotes and controls as
    ``_``) and the exact name, UTF-8 percent-encoded (RFC 5987); no name can break or extend the header."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename) or "download"
    exact = quote(filename.encode("utf-8", "surrogateescape"), safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _range_start(header: str | None, size: int) -> int | None:
    """The start of an open ``Range: bytes=N-`` request (the only kind the CLI's streaming sends)."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    text = header[len("bytes=") : -1]
    if not (text.isascii() and text.isdigit()):
        return None  # not a range this server serves: the whole file
    return int(text)
