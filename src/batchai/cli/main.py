"""The ``batchai`` entry point: the command tree, and errors printed as one line with a non-zero exit."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from batchai import __version__
from batchai.cli import arm, clusters, jobs, storage
from batchai.cli.client import Client
from batchai.cli.common import State, command
from batchai.cli.errors import CliError
from batchai.cli.server import configure, server
from batchai.cli.tables import usage_table


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version")
@click.option("--home", envvar="BATCHAI_HOME", help="Home of the local server (for its endpoint and token).")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """batchai: Azure Batch AI on machines you own.

    Commands mirror 'az batchai', 'az storage', 'az group' and 'az provider'."""
    ctx.obj = State(home, dict(os.environ))


batchai_groups = (
    arm.group,
    arm.provider,
    arm.workspace,
    arm.experiment,
    clusters.cluster,
    clusters.file_server,
    jobs.job,
    storage.storage,
    server,
)
for command_group in batchai_groups:
    cli.add_command(command_group)
cli.add_command(configure)


@command(cli, "list-usages", table=usage_table, model="Usage")
@click.option("-l", "--location", required=True, envvar="AZURE_DEFAULTS_LOCATION", help="Location (any name).")
def list_usages(client: Client, location: str) -> Any:
    """Show the current usage of resources (cluster nodes against this host's cores)."""
    return arm.list_usages(client, location)


def _fail(message: str, code: int) -> None:
    click.echo("ERROR: " + " ".join(message.split()), err=True)
    sys.exit(code)


# az's global options, which it takes anywhere on the line; a command's own (``common.command``) are the same.
GLOBAL_FLAGS = frozenset({"--debug", "--verbose", "--only-show-errors"})
GLOBAL_VALUED = frozenset({"-o", "--output", "--query", "--subscription"})


def hoist_global_options(root: click.Group, args: list[str]) -> list[str]:
    """``args`` with the global options given before the command (``batchai --debug group list``, ``batchai
    group -o table list``) moved to just after it, where click takes them; the rest unchanged."""
    before: list[str] = []
    moved: list[str] = []
    group: click.Group = root
    i = 0
    while i < len(args):
        token = args[i]
        name, equals, _ = token.partition("=")
        if name in GLOBAL_FLAGS and not equals:
            moved.append(token)
        elif name in GLOBAL_VALUED and (equals or i + 1 < len(args)):
            moved += [token] if equals else args[i : i + 2]
            i += 0 if equals else 1
        elif token == "--home" and i + 1 < len(args):  # the root group's own option, with its value
            before += args[i : i + 2]
            i += 1
        elif token.startswith("-"):
            before.append(token)
        else:
            before.append(token)
            sub = group.commands.get(token)
            if not isinstance(sub, click.Group):  # the command (or a name click will refuse): stop here
                return before + moved + args[i + 1 :]
            group = sub
        i += 1
    return before + moved


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure is one line on stderr (``ERROR: ...``) and a non-zero exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=hoist_global_options(cli, args), prog_name="batchai", standalone_mode=False)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group without its command: its help, as az shows it
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
    except click.UsageError as exc:
        where = f" {exc.ctx.command_path}:" if exc.ctx else ""
        _fail(f"{where} {exc.format_message()}".strip(), 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort as exc:  # click's form of Ctrl-C (and of end of input at a prompt)
        if isinstance(exc.__context__, KeyboardInterrupt):
            _fail("interrupted", 130)
        _fail("aborted", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:
        _fail(str(exc), 1)
    except Exception as exc:  # a bug: still one line, never a traceback
        _fail(f"unexpected {type(exc).__name__}: {exc}", 1)
