"""What every command shares: the ``-o``/``--query`` options, the server connection, confirmation."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click
from click.parser import _OptionParser, _ParsingState

from batchai.cli.client import Client, connection
from batchai.cli.errors import NOT_FOUND_EXIT_CODE, CliError
from batchai.cli.output import FORMATS, check_query, emit, flatten, with_resource_groups

TableFn = Callable[[Any], Any]


class State:
    """The CLI's view of its surroundings, created once per invocation (``click`` context object)."""

    def __init__(self, home: str | None, environ: dict[str, str]) -> None:
        self.home = home
        self.environ = environ
        self.only_errors = False  # --only-show-errors: no warnings
        self._clients: dict[str | None, Client] = {}

    def client(self, subscription: str | None = None) -> Client:
        """The client of the configured server, in the configured subscription or ``subscription``."""
        if subscription not in self._clients:
            conn = connection(self.home, self.environ)
            if subscription:
                conn = dataclasses.replace(conn, subscription=subscription)
            self._clients[subscription] = Client(conn)
        return self._clients[subscription]


def warn(message: str) -> None:
    """A warning on stderr, as az's ``WARNING:`` lines (none with ``--only-show-errors``)."""
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx else None
    if state is None or not state.only_errors:
        click.echo(message, err=True)


# The options every command takes (az's "global arguments"), listed last in its help.
GLOBAL_OPTIONS = frozenset({"output", "query", "home", "subscription", "debug", "verbose", "only_show_errors"})

# The parts of an ARM id that ``--ids`` fills in, by the name of the command's parameter; ``name`` is the
# resource the id names (its last part).
ID_PARTS = {"resourcegroups": "group", "workspaces": "workspace", "experiments": "experiment"}
ID_PARAMS = frozenset({*ID_PARTS.values(), "name"})
_ARM_ID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)(?P<rest>(?:/[^/]+/[^/]+)*)/?$", re.IGNORECASE)


def parse_id(resource_id: str) -> tuple[str, dict[str, str]]:
    """An ARM id's subscription and the command parameters it fills in (as ``--ids`` does in az)."""
    match = _ARM_ID.match(resource_id.strip())
    if not match or not match["rest"]:
        raise CliError(f"invalid resource id '{resource_id}': use /subscriptions/SUB/resourceGroups/GROUP/...", 2)
    parts = match["rest"].strip("/").split("/")
    pairs = [(parts[i].lower(), parts[i + 1]) for i in range(0, len(parts), 2)]
    values = {ID_PARTS[kind]: name for kind, name in pairs if kind in ID_PARTS}
    values["name"] = pairs[-1][1]
    return match["sub"], values


class IdsCommand(click.Command):
    """A command that also takes ``--ids``: ARM ids in place of its name options (which are then optional)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with_ids = "--ids" in args
        if with_ids:
            for param in self.params:
                if param.name in ID_PARAMS:
                    param.required = False
        rest = super().parse_args(ctx, args)
        if with_ids and not ctx.params.get("ids"):
            raise click.UsageError("--ids needs one or more resource ids", ctx)
        return rest


pass_state = click.make_pass_decorator(State, ensure=True)


def command(
    group: click.Group,
    name: str,
    *,
    table: TableFn | None = None,
    flat: bool = True,
    model: str | None = None,
    help: str | None = None,
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register an az-style command: the function gets a ``Client`` first and returns what to print, shown as
    az shows it (``output.flatten``) unless ``flat`` is false; ``model``: the SDK model of what it returns, when
    that is no ARM resource (e.g. ``File``)."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def run(
            output: str,
            query: str | None,
            home: str | None,
            subscription: str | None,
            debug: bool,
            verbose: bool,
            only_show_errors: bool,
            ids: tuple[str, ...] = (),
            **kwargs: Any,
        ) -> None:
            ctx = click.get_current_context()
            state: State = ctx.ensure_object(State)
            if home:
                state.home = home
            state.only_errors = only_show_errors
            if debug or verbose:  # the requests sent (and with --debug their answers), on stderr as az shows them
                logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s: %(message)s")
                logging.getLogger("batchai.cli").setLevel(logging.DEBUG if debug else logging.INFO)
            check_query(query)
            try:
                if ids:  # az runs the command once per id, and shows a list of the results if more than one
                    results = []
                    for resource_id in ids:
                        id_subscription, values = parse_id(resource_id)
                        known = {k: v for k, v in values.items() if k in kwargs}
                        results.append(fn(state.client(id_subscription), **{**kwargs, **known}))
                    result = results[0] if len(results) == 1 else results
                else:
                    result = fn(state.client(subscription), **kwargs)
            except CliError as exc:
                if name == "show" and exc.status == 404:
                    exc.exit_code = NOT_FOUND_EXIT_CODE
                raise
            result = flatten(result, model) if flat else with_resource_groups(result)
            emit(result, output, query, click.echo, table)

        default_output = os.environ.get("BATCHAI_OUTPUT") or os.environ.get("AZURE_CORE_OUTPUT") or "json"
        run = click.option(
            "-o",
            "--output",
            type=click.Choice(FORMATS),
            default=default_output,
            show_default=True,
            help="Output format.",
        )(run)
        run = click.option("--query", help="JMESPath query string, applied to the output.")(run)
        # (given after the command; before it, and $BATCHAI_HOME, are the group's option: see main.cli)
        run = click.option("--home", hidden=True)(run)
        run = click.option("--subscription", help="Subscription id (default: the configured one).")(run)
        run = click.option("--debug", is_flag=True, help="Show the requests sent and their answers in full.")(run)
        run = click.option("--verbose", is_flag=True, help="Show the requests sent.")(run)
        run = click.option("--only-show-errors", is_flag=True, help="Show errors only, no warnings.")(run)
        # Commands on one existing ARM resource (those with a resource group, and ``group``'s own) take --ids.
        takes_ids = name not in ("create", "list") and (
            group.name == "group" or any(p.name == "group" for p in getattr(fn, "__click_params__", []))
        )
        if takes_ids:
            run = click.option(
                "--ids",
                cls=SpaceSeparated,
                help="One or more resource ids (space-separated), in place of the name options.",
            )(run)
        made = group.command(name, cls=IdsCommand if takes_ids else click.Command, help=help or fn.__doc__)(run)
        # Listed as az lists them: the command's own options, then --ids, then the global ones.
        made.params.sort(key=lambda p: 2 if p.name in GLOBAL_OPTIONS else 1 if p.name == "ids" else 0)
        return made

    return decorate


def confirm(yes: bool, what: str) -> None:
    """Ask before ``what`` unless ``--yes``; with no terminal to ask on, refuse as az does."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError("Unable to prompt for confirmation as no tty available. Use --yes.", exit_code=1)
    if not click.confirm(f"Are you sure you want to perform this operation? ({what})", default=False, err=True):
        raise CliError("the operation was cancelled", exit_code=1)


def ensure_missing(client: Client, path: str, message: str) -> None:
    """Refuse to create what exists already, as az's create commands do (the API would update it)."""
    if client.get(path, ok_missing=True) is not None:
        raise CliError(message)


def required(value: str | None, flag: str) -> str:
    if not value:
        raise CliError(f"the following arguments are required: {flag}", exit_code=2)
    return value


def yes_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")(fn)


def no_wait_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--no-wait", is_flag=True, help="Do not wait for the long-running operation to finish.")(fn)


class SpaceSeparated(click.Option):
    """A repeatable option that also takes the values after it up to the next option, as az's space-separated
    lists do: ``--tags a=b c=d`` is ``--tags a=b --tags c=d``. For commands without positional arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: _OptionParser, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            take = option.process

            def greedy(value: Any, state: _ParsingState, take: Callable[[Any, _ParsingState], None] = take) -> None:
                take(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    take(state.rargs.pop(0), state)

            option.process = greedy  # type: ignore[method-assign]
