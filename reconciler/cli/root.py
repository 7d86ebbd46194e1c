"""The `reconciler` command: a thin, lazy click group; each command lives in `reconciler.cli`.

Errors are mapped to exit codes here and nowhere else: every `ReconcilerError` carries its
exit code (an `ExitCode`, see `reconciler.exitcodes`), click's own usage errors exit 1 like any
other error (2 means "changes present").

The commands are loaded only when one is run (or asked for its help): `COMMANDS` names the
module of each and its one-line help, so `reconciler --help` lists them without importing the
apply engine, the HTTP client or the sandbox server (docs/BENCHMARKS.md, "Start-up").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from gettext import gettext as _
from typing import Any

import click

from reconciler import __version__
from reconciler.cli.console import Console
from reconciler.cli.session import Session
from reconciler.errors import ReconcilerError, SpecError
from reconciler.exitcodes import ExitCode


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (`module:attribute`) and the one line the root help shows for it.

    `summary` is the first line of the command's docstring; a test holds the two equal, so
    the root help reads the same as if every command had been imported.
    """

    target: str
    summary: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        # `__import__`, not `importlib.import_module`: only an import statement's path is
        # reported by `python -X importtime`, which the start-up tests read.
        module = __import__(module_name, fromlist=[attribute])
        command = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


COMMANDS: Mapping[str, LazyCommand] = {
    "apply": LazyCommand(
        "reconciler.cli.apply:apply",
        "Make the account match FILE, or execute the saved PLAN_FILE (or plan directory).",
    ),
    "doctor": LazyCommand(
        "reconciler.cli.doctor:doctor",
        "Read-only check of signing, clock, rate limits, every read's shape and the stream.",
    ),
    "drift": LazyCommand(
        "reconciler.cli.drift:drift",
        "Report how the account differs from FILE; exit 2 on drift. Sends nothing.",
    ),
    "history": LazyCommand(
        "reconciler.cli.history:history",
        "List past applies (time, account, calls sent, result) from their journals.",
    ),
    "import": LazyCommand(
        "reconciler.cli.import_:import_",
        "Write a desired-state file that matches the live account.",
    ),
    "plan": LazyCommand(
        "reconciler.cli.plan:plan", "Show the calls that would make the account match FILE."
    ),
    "sandbox": LazyCommand(
        "reconciler.cli.sandbox:sandbox",
        "A local emulator of the Levret futures API (REST, signing, stream, faults).",
    ),
    "schema": LazyCommand(
        "reconciler.cli.schema:schema", "Print the JSON Schema of the desired-state file."
    ),
    "show": LazyCommand(
        "reconciler.cli.show:show",
        "Render the saved plan PLAN_FILE, its calls checked against the policy again.",
    ),
    "validate": LazyCommand(
        "reconciler.cli.validate:validate",
        "Check desired-state FILES; every problem is listed with file, line and field.",
    ),
    "watch": LazyCommand(
        "reconciler.cli.watch:watch",
        "Watch the account against FILE until stopped (SIGTERM, Ctrl-C).",
    ),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is looked up.

    click's documented lazy-loading pattern (`list_commands` and `get_command` overridden);
    `format_commands` renders the root help from the table instead of loading every command.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is not None and cmd_name not in self.commands:
            self.add_command(lazy.load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like `click.Group.format_commands`, the lazy ones' lines taken from the table."""
        names = [name for name in self.list_commands(ctx) if self._listed(ctx, name)]
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self._short_help(ctx, name, limit)) for name in names]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)

    def _listed(self, ctx: click.Context, name: str) -> bool:
        if name in self.lazy_commands and name not in self.commands:
            return True  # no lazy command is hidden
        command = super().get_command(ctx, name)
        return command is not None and not command.hidden

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str:
        if name in self.lazy_commands and name not in self.commands:
            # Shortened by click's own rule, as a loaded command's docstring would be.
            summary = self.lazy_commands[name].summary
            return click.Command(name, help=summary).get_short_help_str(limit)
        command = super().get_command(ctx, name)
        assert command is not None
        return command.get_short_help_str(limit)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="reconciler")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr: -v what is done, -vv every request attempt (never a secret).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no notes on stderr.")
@click.option("--no-color", is_flag=True, help="Never colour the output (also NO_COLOR=1).")
@click.pass_context
def cli(context: click.Context, verbose: int, quiet: bool, no_color: bool) -> None:
    """Plan and apply a desired futures portfolio on a Levret account."""
    # The one console of the run: every command takes it from here (`pass_session`).
    context.obj = Session(Console.build(verbosity=verbose, quiet=quiet, no_color=no_color))
    if verbose:
        # Only our own loggers get louder: a transport library's debug lines are not ours
        # to vouch for, and must never be the place a header or a secret slips out.
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("reconciler").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code of the project's contract (see README)."""
    try:
        code = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = ExitCode.ERROR
    except click.ClickException as error:
        error.show()
        code = ExitCode.ERROR
    except SpecError as error:
        for problem in error.problems:
            click.echo(f"Error: {problem}", err=True)
        code = error.exit_code
    except ReconcilerError as error:
        click.echo(f"Error: {error}", err=True)
        code = error.exit_code
    return code if isinstance(code, int) else ExitCode.OK


def main() -> None:
    sys.exit(run())
