"""Streaming downloads with a progress bar on stderr; the file appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from batchai.cli.client import Client, error_message
from batchai.cli.errors import CliError


def progress() -> Progress:
    from rich.console import Console

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def download_to(client: Client, url: str, dest: Path, size: int | None = None) -> None:
    """Stream ``url`` into ``dest`` through a temporary file beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle, progress() as bar, client.http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise CliError(error_message(response))
            total = size if size is not None else int(response.headers.get("content-length", 0)) or None
            task = bar.add_task(dest.name, total=total)
            for chunk in response.iter_bytes(1 << 20):
                handle.write(chunk)
                bar.advance(task, len(chunk))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
