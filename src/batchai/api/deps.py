"""Per-request plumbing: the unit of work around a service call, api-version checks, and paging."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.requests import HTTPConnection

from batchai import API_VERSION
from batchai.errors import Conflict, InvalidInput, NotFound
from batchai.ids import SUBSCRIPTION, check_name
from batchai.models.resources import NodeCommandInput
from batchai.services.context import Ctx, NodeTarget, Runtime
from batchai.states import JobState
from batchai.store.tables import Job

T = TypeVar("T")
BATCHAI_VERSIONS = frozenset({API_VERSION})


@contextmanager
def unit_of_work(request: HTTPConnection) -> Iterator[Ctx]:
    """A service context whose changes commit when the block ends, then run the after-commit work (a
    websocket's handshake, like a GET, only reads)."""
    state = request.app.state
    method = request.scope.get("method", "GET")
    with state.db.session(snapshot=method == "GET") as session:
        ctx = Ctx(session=session, storage=state.storage, clock=state.clock, runtime=state.engine)
        yield ctx
    for action in ctx.after_commit:
        action()
    if state.engine is not None and method != "GET":  # a read changes nothing the engine acts on
        job = "/jobs/" in request.url.path.lower()
        state.engine.wake(clusters=not job, queued=job and method == "PUT")


def run(request: HTTPConnection, fn: Callable[[Ctx], T], attempts: int = 3) -> T:
    """``fn`` in a unit of work, retried if the engine changed the same rows meanwhile."""
    for attempt in range(attempts):
        try:
            with unit_of_work(request) as ctx:
                return fn(ctx)
        except (StaleDataError, IntegrityError):
            # Another request created the same row meanwhile (a unique key): the next attempt finds it.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def run_on_node(request: Request, target: NodeTarget, body: NodeCommandInput) -> JSONResponse:
    """Run the command on the node (outside any unit of work: it may take minutes) and answer what it printed
    and how it ended."""
    engine: Runtime | None = request.app.state.engine
    if engine is None:
        raise Conflict("The server is starting or stopping; try again.", code="ServerNotReady")
    result = engine.run_on_node(target, body.command, body.timeout_in_seconds)
    return respond(
        {
            "nodeId": target.node_name,
            "exitCode": result.exit_code,
            "timedOut": result.timed_out,
            "stdout": result.stdout,
            "stderr": result.stderr,
        }
    )


def wait_jobs_ended(request: Request, job_ids: list[int], timeout: float) -> None:
    """Wait (bounded) until the engine has ended these jobs (or they are gone)."""
    if not job_ids:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:

        def unfinished(ctx: Ctx) -> int:
            rows = ctx.session.scalars(select(Job.execution_state).filter(Job.id.in_(job_ids)))
            return sum(1 for state in rows if not JobState(state).is_terminal)

        if run(request, unfinished) == 0:
            return
        time.sleep(0.05)


def delete_in_two_steps(request: Request, prepare: Callable[[Ctx], list[int]], delete: Callable[[Ctx], bool]) -> bool:
    """Deleting what may hold running jobs: ask them to stop, wait for the engine to end them, delete. What is
    gone by the second step, or whose parent is (another request's delete of its group ended first), was
    deleted by someone else: False, as for a resource already gone."""
    job_ids = run(request, prepare)
    wait_jobs_ended(request, job_ids, request.app.state.settings.grace_seconds + 15)
    try:
        return run(request, lambda ctx: _flushed_once(ctx, delete))
    except NotFound:
        return False


def _flushed_once(ctx: Ctx, delete: Callable[[Ctx], bool]) -> bool:
    """``delete`` with one flush at commit: an autoflush halfway (a lazy load) would delete the children it has
    marked, and the parent's ORM delete cascade would then delete them again (0 rows: StaleDataError on jobs)."""
    with ctx.session.no_autoflush:
        return delete(ctx)


async def subscription_id(request: HTTPConnection) -> None:
    """FastAPI dependency: the subscription id of an ARM path is a name (it becomes part of output paths)."""
    sub = request.path_params.get("sub")
    if sub is not None:
        check_name("subscription", sub, SUBSCRIPTION)


# JSON escapes of what no stored text may hold: a UTF-16 surrogate (``\ud800``; valid in pairs, but a lone one
# is no Unicode text) and NUL (``\u0000``), which no name, path, command or environment variable can carry.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


async def unicode_body(request: HTTPConnection) -> None:
    """Refuse a JSON body holding a lone surrogate (``"\ud800"``) or a NUL: JSON's escapes allow them, but what
    stored a lone surrogate could never be shown again (every list holding it would fail), and a NUL cannot
    reach a process or a file name. The error's target is where the string is (``properties.commandLine``)."""
    if not isinstance(request, Request) or request.method not in ("PUT", "PATCH", "POST"):
        return
    body = await request.body()
    if not _SUSPECT_ESCAPE.search(body):
        return
    try:
        found = _bad_text(json.loads(body), "")
    except ValueError:
        return  # not JSON: the route says what is wrong with it
    if found is not None:
        path, what = found
        raise InvalidInput(
            f"The value of '{path or 'body'}' holds {what}.", code="InvalidRequestContent", target=path or "body"
        )


def _bad_text(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first string (or key, then its object's path) holding a NUL or a lone surrogate, and what
    it holds."""
    if isinstance(value, str):
        return None if (what := _bad_in(value)) is None else (path, what)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and (what := _bad_in(key)) is not None:
            return path, what
        if found := _bad_text(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key):
            return found
    return None


def _bad_in(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000), which no name, path or command can carry"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "a character that is not Unicode text (a lone surrogate such as \\ud800)"
    return None


async def api_version(request: HTTPConnection) -> str:
    """FastAPI dependency for Batch AI routes: ``api-version`` must be given and known."""
    version = request.query_params.get("api-version")
    if not version:
        raise InvalidInput(
            "The api-version query parameter (?api-version=) is required for all requests.",
            code="MissingApiVersionParameter",
            target="api-version",
        )
    if version not in BATCHAI_VERSIONS:
        raise InvalidInput(
            f"The api-version '{version}' is not supported; supported versions: {', '.join(sorted(BATCHAI_VERSIONS))}.",
            code="InvalidApiVersionParameter",
            target="api-version",
        )
    return version


async def any_api_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if not version:
        raise InvalidInput(
            "The api-version query parameter (?api-version=) is required for all requests.",
            code="MissingApiVersionParameter",
            target="api-version",
        )
    return version


def path_names(request: HTTPConnection) -> tuple[str, ...]:
    """The names in the request's path, in the path's order (``sub``, ``group``, ``workspace``, ...)."""
    return tuple(request.path_params.values())


def respond(content: Any, status_code: int = 200) -> JSONResponse:
    """A JSON response of content that is already wire JSON (skips FastAPI's slow re-encoding)."""
    return JSONResponse(content, status_code=status_code)


def page(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
    """One page of ``items`` by ``maxresults`` (1 to 1000) and ``$skiptoken``; ``nextLink`` if more."""
    skip, size = page_window(request)
    return paged(request, items[skip : skip + size], skip + size < len(items))


def page_window(request: Request) -> tuple[int, int]:
    """Where the page a request asks for begins in the whole list, and how long it is (``$skiptoken``,
    ``maxresults``: 1 to 1000)."""
    raw_max = request.query_params.get("maxresults") or request.query_params.get("maxResults") or "1000"
    raw_skip = request.query_params.get("$skiptoken") or "0"
    try:
        size, skip = int(raw_max), int(raw_skip)
    except ValueError as exc:
        raise InvalidInput("maxresults and $skiptoken must be whole numbers.", target="maxresults") from exc
    if not 1 <= size <= 1000:
        raise InvalidInput("maxresults must be between 1 and 1000.", target="maxresults")
    if skip < 0:
        raise InvalidInput("$skiptoken is invalid.", target="$skiptoken")
    return skip, size


def paged(request: Request, value: list[dict[str, Any]], more: bool) -> JSONResponse:
    """The page of ``page_window`` as the answer, with the ``nextLink`` to the next if there is ``more``."""
    skip, size = page_window(request)
    body: dict[str, Any] = {"value": value}
    if more:
        params = dict(request.query_params)
        params["$skiptoken"] = str(skip + size)
        params["maxresults"] = str(size)
        body["nextLink"] = str(request.url.replace_query_params(**params))
    return respond(body)
