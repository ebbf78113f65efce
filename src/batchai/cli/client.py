"""The HTTP client of the CLI: finds the server, sends ARM requests, turns ARM errors into one-line errors."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from batchai import API_VERSION
from batchai.cli.errors import CliError
from batchai.config import DEFAULT_SUBSCRIPTION, resolve_home

CONFIG_FILE = "config.json"


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
    endpoint = environ.get("BATCHAI_ENDPOINT") or stored.get("endpoint") or server.get("endpoint")
    token = environ.get("BATCHAI_TOKEN") or stored.get("token") or server.get("token")
    subscription = environ.get("BATCHAI_SUBSCRIPTION") or stored.get("subscription") or DEFAULT_SUBSCRIPTION
    if not endpoint or not token:
        raise CliError(
            f"no batchai server is configured: start one with 'batchai server start --detach' (home {root}), "
            "or set BATCHAI_ENDPOINT and BATCHAI_TOKEN, or run 'batchai configure'"
        )
    return Connection(str(endpoint).rstrip("/"), str(token), str(subscription))


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


class Client:
    """ARM-style calls against one batchai server."""

    def __init__(self, conn: Connection, timeout: float = 60.0) -> None:
        self.conn = conn
        self.tls = tls_context(os.environ)
        self.http = httpx.Client(
            base_url=conn.endpoint,
            headers={"Authorization": f"Bearer {conn.token}"},
            timeout=timeout,
            verify=self.tls,
        )

    @contextmanager
    def transport_errors(self) -> Iterator[None]:
        """Network failures as one-line errors."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise CliError(f"cannot reach the batchai server at {self.conn.endpoint}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.conn.endpoint} failed: {exc}") from exc

    @property
    def sub(self) -> str:
        return f"/subscriptions/{self.conn.subscription}"

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
            response = self.http.request(method, path, params=params, **kwargs)
        if ok_missing and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise CliError(error_message(response))
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
