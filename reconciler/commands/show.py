"""`reconciler show PLAN.json`: render a saved plan, e.g. in a pull request."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands.options import format_option, render
from reconciler.console import Console
from reconciler.errors import ReconcilerError
from reconciler.render import load_plan


@click.command("show")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@format_option
def show(plan_file: Path, output_format: str) -> None:
    """Render the saved plan PLAN_FILE."""
    console = Console()
    try:
        saved = load_plan(plan_file.read_bytes())
    except ValueError as error:
        raise ReconcilerError(f"{plan_file}: not a saved plan: {error}") from None
    console.data(render(saved, output_format, console))
