"""Signed, expiring download links: ``/download/{name}?r=<resource>&se=<expiry>&sig=<hmac>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, urlencode

from batchai.errors import ApiError


class LinkExpired(ApiError):
    status = 403
    code = "AuthenticationFailed"


def _mac(key: bytes, resource: str, expiry: int) -> str:
    return hmac.new(key, f"{resource}\n{expiry}".encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, endpoint: str, resource: str, name: str, expiry: int) -> str:
    """A link to ``resource``; ``name`` (unsigned) only makes the URL readable: the file is sent under its own."""
    encoded = base64.urlsafe_b64encode(resource.encode()).decode()
    query = urlencode({"r": encoded, "se": expiry, "sig": _mac(key, resource, expiry)})
    return f"{endpoint}/download/{quote(name, safe='')}?{query}"


def verify(key: bytes, encoded: str, expiry: str, signature: str, now: float) -> str:
    """The resource a link names, if its signature holds and it has not expired."""
    try:
        resource = base64.urlsafe_b64decode(encoded.encode()).decode()
        expires = int(expiry)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LinkExpired("The download link is malformed.") from exc
    if not hmac.compare_digest(_mac(key, resource, expires), signature):
        raise LinkExpired("The download link's signature is invalid.")
    if now > expires:
        raise LinkExpired("The download link has expired; list the files again for a fresh one.")
    return resource
