"""The app factory: database, storage backend, token, routes and error handling, from explicit settings."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchai import __version__
from batchai.api import errors
from batchai.api.auth import authenticate, ensure_credentials, signing_key
from batchai.api.deps import subscription_id, unicode_body
from batchai.api.routes import (
    clusters,
    downloads,
    forwarding,
    groups,
    jobs,
    legacy,
    meta,
    providers,
    storage,
    workspaces,
)
from batchai.config import Settings
from batchai.private_files import private_dir
from batchai.providers.base import NodeProvider
from batchai.providers.local import LocalProvider
from batchai.scheduler.engine import Engine
from batchai.scheduler.settings import EngineSettings
from batchai.services.context import utc_now
from batchai.storage.base import StorageBackend
from batchai.storage.local import LocalStorage
from batchai.store.db import Database

log = logging.getLogger("batchai.server")

# Fixed ARM path segments, matched case-insensitively (clients send both resourcegroups and resourceGroups).
_KEYWORDS = {
    k.lower(): k
    for k in (
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.BatchAI",
        "Microsoft.Storage",
        "workspaces",
        "clusters",
        "experiments",
        "jobs",
        "fileServers",
        "operations",
        "locations",
        "usages",
        "listOutputFiles",
        "listRemoteLoginInformation",
        "terminate",
        "storageAccounts",
        "forwardPort",
        "execOnNode",
        "listSetupOutputFiles",
    )
}
_NAMED = {
    "subscriptions",
    "resourceGroups",
    "workspaces",
    "clusters",
    "experiments",
    "jobs",
    "fileServers",
    "locations",
    "storageAccounts",
}


def canonical_path(path: str) -> str:
    """``/subscriptions/s/resourcegroups/g`` -> ``/subscriptions/s/resourceGroups/g``; names kept as sent."""
    if not path.lower().startswith(("/subscriptions/", "/providers/")):
        return path
    out: list[str] = []
    expect_name = False
    for segment in path.split("/"):
        if expect_name or not segment:
            out.append(segment)
            expect_name = False
            continue
        word = _KEYWORDS.get(segment.lower(), segment)
        expect_name = word in _NAMED
        out.append(word)
    return "/".join(out)


class CaseInsensitiveArmPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["path"] = canonical_path(scope["path"])
        await self.app(scope, receive, send)


MAX_ARM_BODY = 4 * 1024 * 1024  # ARM's own limit on a request body


class BoundedArmBodies:
    """The ARM API takes request bodies of at most 4 MiB, as ARM does: by their Content-Length, or, for a body
    sent in chunks without one, by reading it first (up to the limit); the storage data plane, which takes
    files, is not bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/storage/"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                received = await self._read_bounded(receive)
                if received is None:
                    await self._refuse(scope, receive, send)
                    return
                receive = _replay(received, receive)
            elif length is not None and (not length.isdigit() or int(length) > MAX_ARM_BODY):
                await self._refuse(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _read_bounded(receive: Receive) -> list[Message] | None:
        """The request's messages up to the end of its body; None once the body passes the limit."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: the app hears it as it would have
            size += len(message.get("body", b""))
            if size > MAX_ARM_BODY:
                return None
            if not message.get("more_body", False):
                return messages

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {MAX_ARM_BODY // (1024 * 1024)} MiB (or its size is unreadable)."
        await errors.arm_error(413, "RequestEntityTooLarge", message)(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then what the client sends next (its disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def base_environment(environ: dict[str, str] | os._Environ[str], python: str) -> dict[str, str]:
    """The environment jobs start from: the server's own, less batchai's and Azure's credentials; with the
    directory of the nodes' default Python (``python``) first on PATH when it is not on it (a virtual
    environment's ``bin`` when the server was started by its path), so that ``python`` and ``pip`` in a job
    preparation or a command line are the interpreter toolkit jobs run with."""
    env = {k: v for k, v in environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
    directory = os.path.dirname(python)
    path = env.get("PATH", "")
    if directory and directory not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (directory, path) if p)
    return env


def node_provider(settings: Settings) -> NodeProvider:
    """The local provider, or the Ray provider when the server is bound to a Ray cluster."""
    if settings.ray_address:
        from batchai.providers.ray_cluster import RayProvider

        return RayProvider(
            settings.ray_address,
            settings.ray_resource,
            settings.nodes_root,
            settings.home,
            grace_seconds=settings.grace_seconds,
            agent_idle_seconds=settings.ray_agent_idle_seconds,
        )
    return LocalProvider(settings.nodes_root, settings.run_dir, grace_seconds=settings.grace_seconds)


def _sweep_uploads(backend: StorageBackend, before: float) -> None:
    try:
        if swept := backend.sweep_uploads(before):
            log.info("removed %d temporary file(s) of uploads a stopped server left unfinished", swept)
    except OSError as exc:
        log.warning("could not sweep the files of unfinished uploads: %s", exc)


async def arm_request(request: HTTPConnection) -> None:
    """FastAPI dependency of the ARM routes: an authenticated request, a valid subscription id, a body whose text
    can be stored. One dependency rather than three: FastAPI's resolution of each costs more than its check."""
    await arm_data_request(request)
    await unicode_body(request)


async def arm_data_request(request: HTTPConnection) -> None:
    """FastAPI dependency of the routes that stream files: an authenticated request, a valid subscription id."""
    await authenticate(request)
    await subscription_id(request)


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    """A batchai server for ``settings``: migrates the database and writes credentials on start-up."""
    private_dir(settings.home)
    database = Database(settings.database_url)

    backend = LocalStorage(settings.storage_root)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database.upgrade()
        app.state.token = ensure_credentials(settings.credentials_file, settings.endpoint)
        app.state.signing_key = signing_key(settings.credentials_file)
        engine = Engine(
            database,
            backend,
            node_provider(settings),
            EngineSettings(
                home=settings.home,
                default_python=settings.node_python,
                grace_seconds=settings.grace_seconds,
                base_env=tuple(sorted(base_environment(os.environ, settings.node_python).items())),
                containers_on_host=settings.containers_on_host,
                initial_nodes_seconds=settings.auto_scale_initial_seconds,
                stage_jobs=settings.stage_jobs,
            ),
            clock,
        )
        engine.start()
        app.state.engine = engine
        sweep = threading.Thread(target=_sweep_uploads, args=(backend, clock().timestamp()), name="sweep", daemon=True)
        sweep.start()
        log.info("batchai %s serving at %s, home %s", __version__, settings.endpoint, settings.home)
        if settings.containers_on_host:
            log.warning("containers on host: jobs that ask for a container image run directly on this host")
        yield
        app.state.engine = None
        engine.shutdown()
        engine.provider.close()
        database.dispose()

    app = FastAPI(
        title="batchai",
        version=__version__,
        description="Azure Batch AI REST API (api-version 2018-05-01) for machines you own.",
        lifespan=lifespan,
        redirect_slashes=False,  # ".../clusters/" (an empty name) is not found, not redirected to the list
    )
    app.state.settings = settings
    app.state.db = database
    app.state.storage = backend
    app.state.engine = None
    app.state.clock = clock
    errors.install(app)
    for router in (  # jobs first: their routes are the busiest, and routes are matched in order
        jobs.router,
        groups.router,
        workspaces.router,
        clusters.router,
        meta.router,
        forwarding.router,
        providers.router,
        legacy.router,
        storage.accounts,
    ):
        app.include_router(router, dependencies=[Depends(arm_request)])
    app.include_router(storage.data, dependencies=[Depends(arm_data_request)])  # (its bodies are files, streamed)
    app.include_router(downloads.router)
    app.add_middleware(BoundedArmBodies)
    app.add_middleware(CaseInsensitiveArmPaths)
    return app
