"""The one error type the CLI prints: a single line, ``ERROR: ...``, and a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
