"""Streaming downloads with progress on stderr (a bar when stderr is a terminal); a downloaded file appears
whole or not at all."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from batchai.cli.client import Client, error_message
from batchai.cli.errors import CliError

CHUNK = 1 << 20


def progress_bar() -> Progress:
    """Transfer progress on stderr, shown only when stderr is a terminal, and gone when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def download(client: Client, progress: Progress, url: str, dest: Path, label: str) -> int:
    """Stream ``url`` (a path on the server or a signed link) into a temporary file beside ``dest``, renamed to
    ``dest`` once complete (a download cut short is an error and leaves nothing); the bytes received."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.download")
    received = 0
    try:
        with client.transport_errors(), client.http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise CliError(error_message(response))
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = progress.add_task(label, total=total)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                for chunk in response.iter_raw(CHUNK):
                    handle.write(chunk)
                    received += len(chunk)
                    progress.advance(task, len(chunk))
            progress.remove_task(task)
        if total is not None and received != total:
            raise CliError(f"the download of '{label}' was cut short: {received} of {total} bytes")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return received
