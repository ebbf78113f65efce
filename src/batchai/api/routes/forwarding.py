"""Port forwarding to a node (``node exec --address``, which az did over SSH): a websocket per forwarded
connection, relayed by the server to a TCP port of the node. A batchai extension of the API:
``GET .../clusters/{cluster}/forwardPort`` and ``GET .../jobs/{job}/forwardPort`` upgraded to a websocket, with
``nodeId`` (default: the first node), ``host`` (as the node sees it: ``localhost``) and ``port``. Bytes go both
ways as binary messages; an empty message says that side has no more to send (TCP's half-close), and the
server closes once both sides have said so, or when either connection breaks. An error (no such node, a port
nothing listens on) is an ARM error answered instead of the upgrade."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, WebSocket
from starlette.websockets import WebSocketDisconnect

from batchai.api.deps import api_version, run
from batchai.api.errors import arm_error
from batchai.api.routes import EXPERIMENT, WORKSPACE
from batchai.errors import ApiError, InvalidInput
from batchai.services import clusters, jobs
from batchai.services.context import Ctx, NodeTarget

log = logging.getLogger("batchai.api")
router = APIRouter(dependencies=[Depends(api_version)], tags=["nodes"])
CONNECT_SECONDS = 10.0
CHUNK = 64 * 1024


@router.websocket(WORKSPACE + "/clusters/{cluster}/forwardPort")
async def cluster_forward_port(
    websocket: WebSocket, sub: str, group: str, workspace: str, cluster: str, port: str = "", host: str = "localhost"
) -> None:
    node_id = websocket.query_params.get("nodeId")
    await forward(
        websocket,
        lambda ctx: clusters.command_target(clusters.get(ctx, sub, group, workspace, cluster), node_id),
        host,
        port,
    )


@router.websocket(EXPERIMENT + "/jobs/{job}/forwardPort")
async def job_forward_port(
    websocket: WebSocket,
    sub: str,
    group: str,
    workspace: str,
    experiment: str,
    job: str,
    port: str = "",
    host: str = "localhost",
) -> None:
    node_id = websocket.query_params.get("nodeId")
    await forward(
        websocket,
        lambda ctx: jobs.command_target(ctx, jobs.get(ctx, sub, group, workspace, experiment, job), node_id),
        host,
        port,
    )


async def forward(websocket: WebSocket, target: Callable[[Ctx], NodeTarget], host: str, port: str) -> None:
    """Connect to the node's port, then accept the websocket and relay until either side ends."""
    try:
        if not (port.isascii() and port.isdigit()):
            raise InvalidInput(f"The port query parameter must be a TCP port number, not '{port}'.", target="port")
        node = await asyncio.to_thread(run, websocket, target)
        address = clusters.forwarded_address(node, host, int(port))
    except ApiError as exc:
        await websocket.send_denial_response(arm_error(exc.status, exc.code, exc.message, exc.target, exc.details))
        return
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        message = f"Nothing answered at {host}:{port} on {node.node_name} ({address[0]}:{address[1]}): {exc}"
        await websocket.send_denial_response(arm_error(502, "PortNotReachable", message, "port"))
        return
    await websocket.accept()
    try:
        await _relay(websocket, reader, writer)
    finally:
        writer.close()


async def _relay(websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes both ways until each side has said it is done (an empty message, or the node's end of data), or
    until either connection breaks; a side that is done may still receive (a TCP half-close)."""

    async def to_node() -> None:
        while data := await websocket.receive_bytes():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def from_node() -> None:
        while chunk := await reader.read(CHUNK):
            await websocket.send_bytes(chunk)
        await websocket.send_bytes(b"")

    tasks = [asyncio.create_task(to_node()), asyncio.create_task(from_node())]
    try:
        await asyncio.gather(*tasks)
        await websocket.close()
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # either side went away: the other goes too
    except Exception as exc:
        log.warning("port forwarding ended: %r", exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
