"""Every failure leaves the API as an ARM error body: ``{"error": {"code", "message", "target", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from batchai.errors import ApiError

log = logging.getLogger("batchai.api")


def arm_error(
    status: int,
    code: str,
    message: str,
    target: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "target": target, "details": details or []}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return arm_error(exc.status, exc.code, exc.message, exc.target, exc.details)

    @app.exception_handler(ValidationError)
    async def invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        # Bodies validated inside a route (the api versions before 2018-05-01 translate first).
        return await invalid_request(
            request,
            RequestValidationError(
                [
                    {**e, "loc": ("body", "properties", *e["loc"][1:]) if e["loc"][:1] == ("properties",) else e["loc"]}
                    for e in exc.errors()
                ]
            ),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details: list[dict[str, str | None]] = []
        for err in exc.errors():
            where = _location(tuple(err.get("loc", ())))
            message = str(err.get("msg", "invalid"))
            if err.get("type") == "extra_forbidden":
                message = "unknown property"
            elif err.get("type") == "json_invalid":
                message = f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'syntax error')})"
            details.append(
                {
                    "code": "InvalidParameter",
                    "message": f"{where}: {message}" if where else message,
                    "target": where or None,
                }
            )
        first = details[0]["message"] if details else "The request is invalid."
        code = "InvalidRequestContent" if any("JSON" in str(d["message"]) for d in details) else "InvalidParameter"
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return arm_error(
            400,
            code,
            f"The request is invalid: {first}{more}.",
            details[0]["target"] if details else None,
            details,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404 and b"%2f" in request.scope.get("raw_path", b"").lower():
            # A name with a '/' in it (sent escaped, as one segment) matched no path: say why, not "no such path".
            return arm_error(400, "InvalidResourceName", "A resource name cannot contain '/'.")
        codes = {404: "NotFound", 405: "MethodNotAllowed"}
        message = (
            exc.detail
            if isinstance(exc.detail, str) and exc.detail not in ("Not Found",)
            else ("No such API path. Check the URL and the api-version." if exc.status_code == 404 else str(exc.detail))
        )
        return arm_error(exc.status_code, codes.get(exc.status_code, "BadRequest"), message)

    @app.exception_handler(DataError)
    async def unstorable(_request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL refuses what SQLite stores: a string longer than its column, or one holding NUL.
        log.info("refused a value the database cannot store: %s", exc.orig)
        return arm_error(
            400,
            "InvalidRequestContent",
            "The request holds a value that is too long or contains a NUL character.",
        )

    @app.exception_handler(ClientDisconnect)
    async def gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # The client left in the middle of its request (an upload cut short): nothing was stored, nobody hears.
        log.info("a client disconnected before its request was read")
        return arm_error(400, "ClientDisconnected", "The client disconnected before the request was read.")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return arm_error(500, "InternalServerError", "The server met an unexpected error; see its log.")
