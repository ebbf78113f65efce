"""Errors the services raise; the API turns each into an ARM error body with its HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client caused or must know of: ``{"error": {"code", "message", "target", "details"}}``."""

    status: int = 400
    code: str = "BadRequest"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.target = target
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": self.details,
            }
        }


class InvalidInput(ApiError):
    status = 400
    code = "InvalidParameter"


class NotFound(ApiError):
    status = 404
    code = "ResourceNotFound"


class Conflict(ApiError):
    status = 409
    code = "Conflict"


class TooManyRequests(ApiError):
    status = 429
    code = "TooManyRequests"


class Unauthorized(ApiError):
    status = 401
    code = "AuthenticationFailed"
