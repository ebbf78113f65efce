"""``node exec --address``: local ports forwarded to a node's ports through the server, as az did over SSH.

Each ``-L [bind:]port:host:hostport`` listens on the local ``bind:port`` (``127.0.0.1`` unless given; port 0
takes a free one). Every connection made to it opens a websocket to the server's ``forwardPort`` of the
cluster or job, which connects to ``host:hostport`` as the node sees it (``localhost``); the bytes go both
ways until either side closes. A connection the server refuses (nothing listens there) is reported on
stderr and closed; the other connections and listeners go on."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from batchai import API_VERSION
from batchai.cli.client import Connection, error_text
from batchai.cli.errors import CliError

CHUNK = 64 * 1024
_ADDRESS = re.compile(
    r"^(?:(?P<bind>\[[^\]]+\]|[^:\[\]]+):)?(?P<local>\d+):(?P<host>\[[^\]]+\]|[^:\[\]]+):(?P<port>\d+)$"
)


@dataclass(frozen=True)
class Forward:
    """One ``--address``: connections to ``bind:local_port`` here go to ``host:port`` as the node sees it."""

    bind: str
    local_port: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.bind}:{self.local_port} -> {self.host}:{self.port}"


def parse_address(text: str) -> Forward:
    """``[bind:]port:host:hostport`` (ssh's ``-L``, az's ``--address``); a CliError if it is not one."""
    match = _ADDRESS.match(text.strip())
    local = int(match["local"]) if match else -1
    port = int(match["port"]) if match else -1
    if match is None or not 0 <= local < 65536 or not 0 < port < 65536:
        raise CliError(
            f"--address '{text}' is not [bind_address:]port:host:hostport (e.g. 6006:localhost:6006)", exit_code=2
        )
    return Forward((match["bind"] or "127.0.0.1").strip("[]"), local, match["host"].strip("[]"), port)


class Forwarder:
    """Listeners for ``forwards`` on an event loop in a background thread, relaying to the node through the
    server's websocket at ``path/forwardPort`` (a cluster or a job). ``start`` binds every local port (a
    CliError if one cannot be) and returns the forwards with the ports actually bound; ``stop`` closes the
    listeners and the relays; both are safe to call once each, in that order. ``tls`` checks an https
    server's certificate."""

    def __init__(
        self,
        conn: Connection,
        path: str,
        node_id: str | None,
        forwards: list[Forward],
        report: Callable[[str], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.conn = conn
        self.tls = tls if conn.endpoint.startswith("https") else None
        self.path = path
        self.node_id = node_id
        self.forwards = forwards
        self.report = report
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="port-forwarding", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._relays: set[asyncio.Task[None]] = set()

    def __enter__(self) -> list[Forward]:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> list[Forward]:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result()
        except OSError as exc:
            self.stop()
            raise CliError(f"cannot listen for port forwarding: {exc.strerror or exc}") from exc

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _listen(self) -> list[Forward]:
        bound = []
        for forward in self.forwards:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, f: Forward = forward) -> None:
                task = asyncio.current_task()
                assert task is not None
                self._relays.add(task)
                try:
                    await self._serve(f, reader, writer)
                finally:
                    self._relays.discard(task)

            try:
                server = await asyncio.start_server(serve, forward.bind, forward.local_port)
            except OSError:
                await self._close()
                raise
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            bound.append(Forward(forward.bind, port, forward.host, forward.port))
        return bound

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    def _url(self, forward: Forward) -> str:
        query = {"api-version": API_VERSION, "host": forward.host, "port": forward.port}
        if self.node_id:
            query["nodeId"] = self.node_id
        return re.sub(r"^http", "ws", self.conn.endpoint) + f"{self.path}/forwardPort?{urlencode(query)}"

    async def _serve(self, forward: Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        try:
            async with connect(
                self._url(forward),
                additional_headers={"Authorization": f"Bearer {self.conn.token}"},
                ssl=self.tls,
                max_size=None,
                open_timeout=30,
            ) as websocket:
                await _relay(websocket, reader, writer)
        except InvalidStatus as exc:
            self.report(f"{forward}: {error_text(exc.response.status_code, bytes(exc.response.body or b''))}")
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.report(f"{forward}: {exc}")
        finally:
            writer.close()


async def _relay(websocket: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes both ways until the server closes the websocket (once both sides are done) or either connection
    breaks. The end of the local side's data is an empty message, and an empty message from the server is
    the end of the node's: each half-closes its side, as TCP does."""

    async def to_node() -> None:
        while chunk := await reader.read(CHUNK):
            await websocket.send(chunk)
        await websocket.send(b"")

    async def from_node() -> None:
        async for message in websocket:
            if not message:
                if writer.can_write_eof():
                    writer.write_eof()
                continue
            writer.write(message if isinstance(message, bytes) else message.encode())
            await writer.drain()

    sending, receiving = asyncio.create_task(to_node()), asyncio.create_task(from_node())
    tasks = {sending, receiving}
    try:
        pending = set(tasks)
        while receiving in pending:  # until the server closes (both sides done) or the local side breaks
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if sending in done and sending.exception() is not None:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
