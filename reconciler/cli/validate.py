"""`reconciler validate FILE`: check a desired-state file before anyone plans with it.

Offline checks always run. The symbol specs (steps, ticks, leverage caps) are public market
data; when the exchange (or `--sandbox`) answers, the file is checked against them too, and
when it does not, the command says so and still passes on the offline checks.

`--format json` prints one document on stdout, each problem split into `file`, `line`,
`column`, `field` and `message`, so an editor or a CI annotation step needs no regex of ours.

The models and the client are imported when the command runs, not for `validate --help`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import dump_json, endpoint_options
from reconciler.cli.session import Session, pass_session
from reconciler.errors import SpecError
from reconciler.run.connection import endpoint, public_settings

if TYPE_CHECKING:
    from reconciler.levret.settings import ClientSettings
    from reconciler.model.account import SymbolSpec

# `file:line:column: field: message`, the shape of every located problem (see `spec.py`).
_LOCATED = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<field>[^ :]+): (?P<message>.*)$"
)


def problem_data(problem: str) -> dict[str, Any]:
    """A problem line as fields; one without a location keeps its text as the message."""
    match = _LOCATED.match(problem)
    if match is None:
        file, sep, message = problem.partition(": ")
        return {
            "file": file if sep else None,
            "line": None,
            "column": None,
            "field": None,
            "message": message if sep else problem,
        }
    return {
        "file": match["file"],
        "line": int(match["line"]),
        "column": int(match["column"]),
        "field": match["field"],
        "message": match["message"],
    }


async def _fetch_specs(settings: ClientSettings) -> dict[str, SymbolSpec]:
    from reconciler.levret.client import LevretClient

    async with LevretClient(settings) as client:
        return {spec.symbol: spec for spec in await client.supported_symbols()}


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@endpoint_options
@click.option("--offline", is_flag=True, help="Skip the check against the exchange's specs.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one document on stdout, each problem with file, line, column, field, message.",
)
@pass_session
def validate(
    session: Session,
    files: tuple[Path, ...],
    sandbox: bool,
    base_url: str | None,
    offline: bool,
    output_format: str,
) -> None:
    """Check desired-state FILES; every problem is listed with file, line and field."""
    import asyncio

    from reconciler.levret.errors import LevretError
    from reconciler.model.desired import check_against_specs, load

    console = session.console
    specs_checked = False
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
                specs_checked = True
                for desired in loaded:
                    problems.extend(check_against_specs(desired, specs))
    if output_format == "json":
        console.data(
            dump_json(
                {
                    "valid": not problems,
                    "files": [str(file) for file in files],
                    "specs_checked": specs_checked,
                    "problems": [problem_data(problem) for problem in problems],
                }
            )
        )
        if problems:
            raise click.exceptions.Exit(SpecError.exit_code)
        return
    if problems:
        raise SpecError(problems)
    for desired in loaded:
        console.note(f"{desired.filename}: valid")
