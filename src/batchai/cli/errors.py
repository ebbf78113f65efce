"""The one error type the CLI prints: a single line, ``ERROR: ...``, and a non-zero exit."""

from __future__ import annotations

# az's exit code for a ``show`` of a resource that is not there (azure-cli's show_exception_handler), so that
# scripts can test for existence: ``batchai group show -n g || batchai group create ...``.
NOT_FOUND_EXIT_CODE = 3


class CliError(Exception):
    """``status``: the HTTP status of the API's answer the error reports, if it reports one."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


class ServerUnreachable(CliError):
    """The request did not get an answer: the server could not be reached, or the connection broke."""
