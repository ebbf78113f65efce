"""``node exec`` of ``batchai cluster`` and ``batchai job``: a command line run on a node through the server,
and local ports forwarded to the node's (az ran both over SSH)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from batchai.cli.client import Client
from batchai.cli.errors import CliError
from batchai.cli.forwarding import Forwarder, parse_address

# How long a command may run on the node before it is stopped.
EXEC_SECONDS = 300


def exec_options(fn: Any) -> Any:
    """az's ``node exec`` flags. ``--password``/``--ssh-private-key`` are accepted and not needed: the server
    reaches the nodes, not SSH."""
    not_needed = "Not needed: the server reaches the nodes, not SSH (accepted as az took it)."
    fn = click.option("-k", "--ssh-private-key", "_key", help=not_needed)(fn)
    fn = click.option("-p", "--password", "_password", help=not_needed)(fn)
    fn = click.option(
        "-L",
        "--address",
        "addresses",
        multiple=True,
        help="Forward a local port to a port of the node while this command runs: [bind_address:]port:host:hostport "
        "(e.g. 6006:localhost:6006; host as the node sees it; port 0 takes a free one). Repeatable.",
    )(fn)
    fn = click.option(
        "--exec", "command", help="The command line to run on the node (with bash); without it, only forward ports."
    )(fn)
    return click.option("-n", "--node-id", help="The node (default: the first).")(fn)


def exec_on_node(
    client: Client, path: str, node_id: str | None, command: str | None, addresses: tuple[str, ...] = ()
) -> None:
    """Forward the ``addresses`` (``-L``) to the node, run ``command`` there through the server (or, without one,
    wait for Ctrl+C), print what it printed, and exit with its exit code: az's ``node exec``, which used SSH."""
    if not command and not addresses:
        raise CliError("give the command line to run on the node (--exec), ports to forward (--address), or both")
    forwards = [parse_address(address) for address in addresses]
    if forwards:
        node = node_of(client, path, node_id)
        with Forwarder(client.conn, path, node, forwards, say, client.tls) as bound:
            for forward in bound:
                say(f"Forwarding {forward} on {node}")
            if command:
                run_on_node(client, path, node, command)
            say("Press Ctrl+C to stop forwarding.")
            wait_for_interrupt()
        return
    run_on_node(client, path, node_id, command or "")


def node_of(client: Client, path: str, node_id: str | None) -> str:
    """The name of the node ``node_id`` (any case) of a cluster or job, or of its first node."""
    nodes = [login["nodeId"] for login in client.list(path + "/listRemoteLoginInformation", method="POST")]
    if not nodes:
        raise CliError(f"'{path.rsplit('/', 1)[-1]}' has no nodes yet")
    if node_id is None:
        return str(nodes[0])
    match = next((name for name in nodes if name.lower() == node_id.lower()), None)
    if match is None:
        raise CliError(f"'{path.rsplit('/', 1)[-1]}' has no node '{node_id}'; its nodes: {', '.join(nodes)}")
    return str(match)


def run_on_node(client: Client, path: str, node_id: str | None, command: str) -> None:
    """Run ``command`` on a node of ``path`` through the server, print what it printed, and exit with its exit
    code (``execOnNode``)."""
    body = {"command": command, "timeoutInSeconds": EXEC_SECONDS, **({"nodeId": node_id} if node_id else {})}
    result = client.post(path + "/execOnNode", body, timeout=EXEC_SECONDS + 30)
    sys.stdout.write(result["stdout"])
    sys.stdout.flush()
    sys.stderr.write(result["stderr"])
    if result["timedOut"]:
        raise CliError(f"the command did not end within {EXEC_SECONDS} s on {result['nodeId']} and was stopped")
    sys.exit(result["exitCode"] if result["exitCode"] is not None else 1)


def say(line: str) -> None:
    """A line for the user beside the output (stderr)."""
    print(line, file=sys.stderr, flush=True)


def wait_for_interrupt() -> None:
    """Block until Ctrl+C (SIGINT) or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
