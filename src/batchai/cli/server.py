"""``batchai server start|stop|status`` and ``batchai configure``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from batchai.cli.client import CONFIG_FILE, checked_endpoint, checked_token, shown_endpoint
from batchai.cli.common import State
from batchai.cli.errors import CliError
from batchai.config import DEFAULT_PORT, Settings, resolve_home
from batchai.ids import SUBSCRIPTION
from batchai.private_files import write_private


@click.group("server", help="Run the batchai server.")
def server() -> None:
    pass


@server.command("start")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on.")
@click.option("--home", help="Server home (database, storage, node work areas). Default $BATCHAI_HOME or ~/.batchai.")
@click.option("--database-url", help="SQLAlchemy URL; default SQLite in the home. PostgreSQL works too.")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (serve HTTPS).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key.")
@click.option("--detach", "-d", is_flag=True, help="Run in the background; return once the server answers.")
@click.option(
    "--containers-on-host",
    is_flag=True,
    default=None,
    help="Run jobs that ask for a container image directly on the host (no container engine); each such job "
    "says so in its execution.log. Also $BATCHAI_CONTAINERS_ON_HOST=1. Off by default.",
)
@click.option(
    "--no-staging",
    "stage_jobs",
    flag_value=False,
    default=None,
    help="Start a job only once a node is free, rather than staging the job next in line on each busy node to "
    "start the moment the job there ends. Also $BATCHAI_STAGE_JOBS=0.",
)
@click.option(
    "--ray-address",
    help="Run clusters on the Ray cluster at this address (e.g. 127.0.0.1:6379) instead of local processes. "
    "Also $BATCHAI_RAY_ADDRESS. Needs the 'ray' extra.",
)
@click.option(
    "--ray-resource",
    help="The custom resource that marks the Ray nodes batchai may use (one unit per node). "
    "Default 'batchai'; also $BATCHAI_RAY_RESOURCE.",
)
def start(
    host: str,
    port: int,
    home: str | None,
    database_url: str | None,
    certfile: str | None,
    keyfile: str | None,
    detach: bool,
    containers_on_host: bool | None,
    stage_jobs: bool | None,
    ray_address: str | None,
    ray_resource: str | None,
) -> None:
    """Start the server (in the foreground, logging to stderr, unless --detach)."""
    from batchai import server as runner

    if bool(certfile) != bool(keyfile):
        raise CliError("--certfile and --keyfile go together")
    settings = Settings.build(
        os.environ,
        home=home or _global_home(),
        database_url=database_url,
        host=host,
        port=port,
        containers_on_host=containers_on_host,
        ray_address=ray_address,
        ray_resource=ray_resource,
        stage_jobs=stage_jobs,
    )
    if certfile and keyfile:
        settings = dataclasses.replace(settings, certfile=Path(certfile).resolve(), keyfile=Path(keyfile).resolve())
    pid = None if runner.serving_child() else runner.running_pid(settings.home)  # (its supervisor holds the home)
    if pid is not None:
        raise CliError(
            f"a server already runs for home {settings.home} (pid {pid}); stop it with 'batchai server stop'"
        )
    if detach:
        try:
            pid, endpoint = runner.start_detached(settings)
        except RuntimeError as exc:
            raise CliError(str(exc)) from exc
        click.echo(json.dumps({"endpoint": endpoint, "home": str(settings.home), "pid": pid}, indent=2))
        return
    from batchai.store.db import DatabaseInUse

    try:
        runner.serve(settings)
    except DatabaseInUse as exc:
        raise CliError(str(exc)) from exc


@server.command("stop")
@click.option("--home", help="Server home. Default $BATCHAI_HOME or ~/.batchai.")
def stop(home: str | None) -> None:
    """Stop the server of a home (SIGTERM, then SIGKILL after a grace period)."""
    from batchai import server as runner

    root = resolve_home(home or _global_home(), os.environ)
    if not runner.stop(root):
        raise CliError(f"no server runs for home {root}")


@server.command("status")
@click.option("--home", help="Server home. Default $BATCHAI_HOME or ~/.batchai.")
def status(home: str | None) -> None:
    """Show whether the home's server runs, and where."""
    from batchai import server as runner

    root = resolve_home(home or _global_home(), os.environ)
    pid = runner.running_pid(root)
    creds = root / "credentials.json"
    endpoint = json.loads(creds.read_text()).get("endpoint") if creds.exists() else None
    click.echo(json.dumps({"running": pid is not None, "pid": pid, "endpoint": endpoint, "home": str(root)}, indent=2))
    if pid is None:
        raise SystemExit(3)


@click.command("configure")
@click.option("--endpoint", help="URL of the batchai server, e.g. https://host:8600.")
@click.option("--token", help="Its access token.")
@click.option("--subscription", help="Subscription id to use (any id; default all zeros).")
@click.option("--home", help="Where to keep the configuration. Default $BATCHAI_HOME or ~/.batchai.")
def configure(endpoint: str | None, token: str | None, subscription: str | None, home: str | None) -> None:
    """Store the server's endpoint and token (0600 file) for later commands; with no options, show them."""
    root = resolve_home(home or _global_home(), os.environ)
    path = root / CONFIG_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    if subscription and not SUBSCRIPTION.match(subscription):
        raise CliError(f"invalid subscription id '{subscription}': use a GUID (letters, digits and '-')", exit_code=2)
    changes = {
        "endpoint": checked_endpoint(endpoint, "--endpoint").rstrip("/") if endpoint else None,
        "token": checked_token(token, "--token") if token else None,
        "subscription": subscription,
    }
    data.update({k: v for k, v in changes.items() if v})
    if any(changes.values()):
        write_private(path, data)
    shown = {**data, "token": "***" if data.get("token") else None}
    if data.get("endpoint"):
        shown["endpoint"] = shown_endpoint(data["endpoint"])
    click.echo(json.dumps(shown, indent=2, sort_keys=True))


def _global_home() -> str | None:
    """``batchai --home DIR ...`` (or $BATCHAI_HOME), for the commands that take their own ``--home`` too."""
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx else None
    return state.home if state else None
