"""`reconciler plan`: read the account, diff it against the file, print the calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from reconciler.commands.options import (
    endpoint_options,
    format_option,
    now_ms,
    render,
    write_private,
)
from reconciler.connection import client_settings, endpoint
from reconciler.console import Console
from reconciler.errors import PolicyViolation
from reconciler.render import render_json
from reconciler.spec import load
from reconciler.workflow import narrow, plan_account

EXIT_CHANGES = 2


@click.command("plan")
@click.option(
    "-f",
    "--file",
    "file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Desired-state YAML file.",
)
@endpoint_options
@format_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan.")
@click.option("--target", multiple=True, metavar="SYMBOL", help="Plan only these symbols.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes (0 when none)."
)
def plan(
    file: Path,
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    out: Path | None,
    target: tuple[str, ...],
    detailed_exitcode: bool,
) -> None:
    """Show the calls that would make the account match FILE."""
    console = Console()
    desired = narrow(load(file), target)  # a bad file stops here: nothing is read or sent
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        settings = client_settings(where, desired)
        result = asyncio.run(plan_account(settings, desired, now_ms=now_ms()))
    if out is not None:
        write_private(out, render_json(result))
        console.note(f"Saved the plan to {out}.")
    console.data(render(result, output_format, console))
    if result.violations:
        raise PolicyViolation(list(result.violations))
    if detailed_exitcode and result.actions:
        raise click.exceptions.Exit(EXIT_CHANGES)
