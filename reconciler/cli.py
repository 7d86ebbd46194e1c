"""The `reconciler` command: a thin click group; each command lives in `reconciler.commands`.

Errors are mapped to exit codes here and nowhere else: every `ReconcilerError` carries its
exit code, click's own usage errors exit 1 like any other error (2 means "changes present").
"""

from __future__ import annotations

import logging
import sys

import click

from reconciler import __version__
from reconciler.commands.apply import apply
from reconciler.commands.doctor import doctor
from reconciler.commands.drift import drift
from reconciler.commands.history import history
from reconciler.commands.import_ import import_
from reconciler.commands.plan import plan
from reconciler.commands.sandbox import sandbox
from reconciler.commands.schema import schema
from reconciler.commands.show import show
from reconciler.commands.validate import validate
from reconciler.commands.watch import watch
from reconciler.console import set_output_style
from reconciler.errors import ReconcilerError, SpecError

EXIT_ERROR = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr: -v what is done, -vv every request attempt (never a secret).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no notes on stderr.")
@click.option("--no-color", is_flag=True, help="Never colour the output (also NO_COLOR=1).")
def cli(verbose: int, quiet: bool, no_color: bool) -> None:
    """Plan and apply a desired futures portfolio on a Levret account."""
    set_output_style(quiet=quiet, no_color=no_color)
    if verbose:
        # Only our own loggers get louder: a transport library's debug lines are not ours
        # to vouch for, and must never be the place a header or a secret slips out.
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("reconciler").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


for command in (
    plan,
    apply,
    drift,
    doctor,
    import_,
    schema,
    show,
    validate,
    sandbox,
    watch,
    history,
):
    cli.add_command(command)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code of the project's contract (see README)."""
    try:
        code = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = EXIT_ERROR
    except click.ClickException as error:
        error.show()
        code = EXIT_ERROR
    except SpecError as error:
        for problem in error.problems:
            click.echo(f"Error: {problem}", err=True)
        code = error.exit_code
    except ReconcilerError as error:
        click.echo(f"Error: {error}", err=True)
        code = error.exit_code
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run())
