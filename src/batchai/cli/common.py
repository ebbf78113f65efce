"""What every command shares: the ``-o``/``--query`` options, the server connection, confirmation."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click
from click.parser import _OptionParser, _ParsingState

from batchai.cli.client import Client, connection
from batchai.cli.errors import CliError
from batchai.cli.output import FORMATS, check_query, emit, flatten, with_resource_groups

TableFn = Callable[[Any], Any]


class State:
    """The CLI's view of its surroundings, created once per invocation (``click`` context object)."""

    def __init__(self, home: str | None, environ: dict[str, str]) -> None:
        self.home = home
        self.environ = environ
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(connection(self.home, self.environ))
        return self._client


pass_state = click.make_pass_decorator(State, ensure=True)


def command(
    group: click.Group, name: str, *, table: TableFn | None = None, flat: bool = True, help: str | None = None
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register an az-style command: the function gets a ``Client`` first and returns what to print."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def run(output: str, query: str | None, home: str | None, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            state: State = ctx.ensure_object(State)
            if home:
                state.home = home
            check_query(query)
            result = fn(state.client(), **kwargs)
            result = flatten(result) if flat else with_resource_groups(result)
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
        run = click.option("--home", envvar="BATCHAI_HOME", hidden=True)(run)
        return group.command(name, help=help or fn.__doc__)(run)

    return decorate


def confirm(yes: bool, what: str) -> None:
    if not yes and not click.confirm(
        f"Are you sure you want to perform this operation? ({what})", default=False, err=True
    ):
        raise CliError("the operation was cancelled", exit_code=1)


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
