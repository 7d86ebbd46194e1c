"""`reconciler validate FILE`: check a desired-state file before anyone plans with it.

Offline checks always run. The symbol specs (steps, ticks, leverage caps) are public market
data; when the exchange (or `--sandbox`) answers, the file is checked against them too, and
when it does not, the command says so and still passes on the offline checks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from reconciler.commands.options import endpoint_options
from reconciler.connection import endpoint, public_settings
from reconciler.console import Console
from reconciler.errors import SpecError
from reconciler.exchange.client import LevretClient
from reconciler.exchange.errors import LevretError
from reconciler.exchange.models import SymbolSpec
from reconciler.exchange.settings import ClientSettings
from reconciler.spec import check_against_specs, load


async def _fetch_specs(settings: ClientSettings) -> dict[str, SymbolSpec]:
    async with LevretClient(settings) as client:
        return {spec.symbol: spec for spec in await client.supported_symbols()}


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@endpoint_options
@click.option("--offline", is_flag=True, help="Skip the check against the exchange's specs.")
def validate(files: tuple[Path, ...], sandbox: bool, base_url: str | None, offline: bool) -> None:
    """Check desired-state FILES; every problem is listed with file, line and field."""
    console = Console()
    problems: list[str] = []
    loaded = []
    for file in files:
        try:
            loaded.append(load(file))
        except SpecError as error:
            problems.extend(error.problems)
    if not offline and loaded:
        with endpoint(sandbox=sandbox, base_url=base_url) as where:
            try:
                specs = asyncio.run(_fetch_specs(public_settings(where)))
            except LevretError as error:
                console.note(
                    f"Symbol specs not checked: {where.base_url} did not answer ({error})."
                )
            else:
                for desired in loaded:
                    problems.extend(check_against_specs(desired, specs))
    if problems:
        raise SpecError(problems)
    for desired in loaded:
        console.note(f"{desired.filename}: valid")
