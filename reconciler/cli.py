"""The `reconciler` command: a thin click group; each command lives in `reconciler.commands`.

Errors are mapped to exit codes here and nowhere else.
"""

from __future__ import annotations

import sys

import click

from reconciler import __version__
from reconciler.commands.sandbox import sandbox
from reconciler.errors import ReconcilerError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
def cli() -> None:
    """Plan and apply a desired futures portfolio on a Levret account."""


cli.add_command(sandbox)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except ReconcilerError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(error.exit_code)
