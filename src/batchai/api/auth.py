"""The admin token: created at first start, kept with the endpoint in a 0600 file in the home."""

from __future__ import annotations

import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from batchai.errors import Unauthorized
from batchai.private_files import write_private


def ensure_credentials(path: Path, endpoint: str) -> str:
    """The admin token, created on first start; the file is rewritten with the current endpoint."""
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text())
    token = data.get("token") or secrets.token_urlsafe(32)
    signing_key = data.get("signingKey") or secrets.token_urlsafe(32)
    write_private(path, {"endpoint": endpoint, "token": token, "signingKey": signing_key})
    return str(token)


def signing_key(path: Path) -> bytes:
    return str(json.loads(path.read_text())["signingKey"]).encode()


async def authenticate(request: HTTPConnection) -> None:
    """FastAPI dependency: a request (or a websocket's handshake) must carry ``Authorization: Bearer <admin
    token>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(
            "Authentication failed. The 'Authorization' header is missing: send 'Bearer <token>' "
            "(the token is in the server home's credentials.json).",
            code="AuthenticationFailed",
        )
    expected: str = request.app.state.token
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("Authentication failed. The access token is invalid.", code="InvalidAuthenticationToken")
