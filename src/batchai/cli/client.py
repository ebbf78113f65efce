"""The HTTP client of the CLI: finds the server, sends ARM requests, turns ARM errors into one-line errors."""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from batchai import API_VERSION
from batchai.cli.errors import CliError, ServerUnreachable
from batchai.config import DEFAULT_SUBSCRIPTION, resolve_home

CONFIG_FILE = "config.json"
log = logging.getLogger("batchai.cli.http")


@dataclass(frozen=True)
class Connection:
    endpoint: str
    token: str
    subscription: str


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def connection(home: str | None, environ: Mapping[str, str]) -> Connection:
    """Where the server is: ``$BATCHAI_ENDPOINT``/``$BATCHAI_TOKEN``, else ``batchai configure``'s file,
    else the credentials the server wrote in the home (``--home`` or ``$BATCHAI_HOME``)."""
    root = resolve_home(home, environ)
    stored = _read(root / CONFIG_FILE)
    server = _read(root / "credentials.json")
    sources = {"environment": environ, str(root / CONFIG_FILE): stored, str(root / "credentials.json"): server}
    endpoint, endpoint_source = _setting(sources, "BATCHAI_ENDPOINT", "endpoint")
    token, token_source = _setting(sources, "BATCHAI_TOKEN", "token")
    subscription = environ.get("BATCHAI_SUBSCRIPTION") or stored.get("subscription") or DEFAULT_SUBSCRIPTION
    if not endpoint or not token:
        raise CliError(
            f"no batchai server is configured: start one with 'batchai server start --detach' (home {root}), "
            "or set BATCHAI_ENDPOINT and BATCHAI_TOKEN, or run 'batchai configure'"
        )
    return Connection(
        checked_endpoint(endpoint, endpoint_source), checked_token(token, token_source), str(subscription)
    )


def _setting(sources: Mapping[str, Mapping[str, Any]], variable: str, key: str) -> tuple[str, str]:
    """The first value given (the variable in the environment, ``key`` in the files) and where it came from."""
    for source, values in sources.items():
        name = variable if source == "environment" else key
        value = str(values.get(name) or "").strip()
        if value:
            return value, (f"${variable}" if source == "environment" else f"'{key}' in {source}")
    return "", ""


def checked_endpoint(endpoint: str, source: str = "the endpoint") -> str:
    """The endpoint, if it is an http(s) URL httpx can send to; else a one-line error naming its source."""
    example = "give one such as http://127.0.0.1:8080"
    try:
        url = httpx.URL(endpoint)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise CliError(f"the batchai endpoint '{endpoint}' ({source}) is not a valid URL ({exc}): {example}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise CliError(f"the batchai endpoint '{endpoint}' ({source}) is not an http:// or https:// URL: {example}")
    if port is not None and not 0 < port < 65536:
        raise CliError(f"the batchai endpoint '{endpoint}' ({source}) has no valid port (1 to 65535): {example}")
    return endpoint.rstrip("/")


def checked_token(token: str, source: str = "the token") -> str:
    """The token, if it can travel in an HTTP header (visible ASCII, no spaces)."""
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise CliError(f"the batchai token ({source}) must be visible ASCII characters without spaces")
    return token


def shown_endpoint(endpoint: str) -> str:
    """The endpoint as the CLI prints it: a password in it (``https://user:pw@host``) left out."""
    parts = urlsplit(endpoint)
    if not parts.password:
        return endpoint
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}{port}"))


def segment(name: str) -> str:
    """``name`` as one URL path segment: a ``/``, ``?`` or ``#`` in it cannot reach another resource, and ``.``
    and ``..`` are escaped, so that they reach the server (which refuses them) rather than being resolved away
    by the HTTP client."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def error_message(response: httpx.Response) -> str:
    return error_text(response.status_code, response.content, response.reason_phrase)


def error_text(status: int, body: bytes | None, reason: str = "") -> str:
    """An error answer as the CLI shows it: ``(code) message`` from an ARM error body, else its first line."""
    try:
        error = json.loads(body or b"")["error"]
        return f"({error['code']}) {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = (body or b"").decode(errors="replace").strip().splitlines()[:1]
        return f"HTTP {status}: {text[0] if text else reason}"


def tls_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """How the CLI checks an https server's certificate: the system's CAs, or ``$BATCHAI_CA_BUNDLE``."""
    return ssl.create_default_context(cafile=environ.get("BATCHAI_CA_BUNDLE") or None)


def _log_request(request: httpx.Request) -> None:
    """``--debug``: what is sent, without the token, and without the body (a job's secrets, keys)."""
    headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
    log.debug("Request: %s %s headers=%s", request.method, request.url, headers)


def _log_response(response: httpx.Response) -> None:
    """``--debug``: what came back (the body of a JSON answer; downloads are not read here)."""
    body = ""
    if response.headers.get("content-type", "").startswith("application/json"):
        body = _body(response.read())
    log.debug("Response: %s headers=%s body=%s", response.status_code, dict(response.headers), body)


def _body(content: bytes) -> str:
    return content[:4000].decode(errors="replace") if content else ""


class Client:
    """ARM-style calls against one batchai server."""

    def __init__(self, conn: Connection, timeout: float = 60.0) -> None:
        self.conn = conn
        self.tls = tls_context(os.environ)
        hooks: dict[str, list[Callable[..., Any]]] = {}
        if log.isEnabledFor(logging.DEBUG):
            hooks = {"request": [_log_request], "response": [_log_response]}
        self.http = httpx.Client(
            base_url=conn.endpoint,
            headers={"Authorization": f"Bearer {conn.token}"},
            timeout=timeout,
            verify=self.tls,
            event_hooks=hooks,
        )

    @contextmanager
    def transport_errors(self) -> Iterator[None]:
        """Network failures as one-line errors."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise ServerUnreachable(
                f"cannot reach the batchai server at {shown_endpoint(self.conn.endpoint)}: {exc}. Is it running? "
                "'batchai server status' tells (give --home or set BATCHAI_HOME if it has its own home); "
                "'batchai server start --detach' starts one"
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"request to {shown_endpoint(self.conn.endpoint)} failed: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {shown_endpoint(self.conn.endpoint)} failed: {exc}") from exc

    @property
    def sub(self) -> str:
        return f"/subscriptions/{segment(self.conn.subscription)}"

    def request(
        self,
        method: str,
        path: str,
        *,
        api_version: str | None = API_VERSION,
        ok_missing: bool = False,
        **kwargs: Any,
    ) -> Any:
        params = dict(kwargs.pop("params", None) or {})
        if api_version:
            params["api-version"] = api_version
        with self.transport_errors():
            # (no params at all for a nextLink: httpx would replace the link's own query with an empty one)
            response = self.http.request(method, path, params=params or None, **kwargs)
        if ok_missing and response.status_code == 404:
            return None
        if response.status_code >= 300:  # (the API never redirects: a 3xx is not the answer asked for)
            raise CliError(error_message(response), status=response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def list(self, path: str, method: str = "GET", **kwargs: Any) -> list[Any]:
        return list(self.iterate(path, method, **kwargs))

    def iterate(self, path: str, method: str = "GET", **kwargs: Any) -> Iterator[Any]:
        """Every item of a paged list, following ``nextLink``."""
        page = self.request(method, path, **kwargs)
        while True:
            yield from page.get("value", [])
            link = page.get("nextLink")
            if not link:
                return
            page = self.request(method, link, api_version=None)

    def close(self) -> None:
        self.http.close()
