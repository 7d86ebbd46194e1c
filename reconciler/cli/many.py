"""The `-f` option of plan, apply and drift (one file, several, or a directory) and its exit.

One file keeps the single-account behaviour (and output) exactly; several files or a
directory switch to the grouped, per-account behaviour of `reconciler.run.accounts` (imported in
the functions that use it, so `--help` does not load it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.cli.options import render
from reconciler.exitcodes import ExitCode, most_severe

if TYPE_CHECKING:
    from reconciler.cli.console import Console
    from reconciler.run.accounts import Outcome

__all__ = ["files_option", "finish", "show_plans", "single_file"]

F = TypeVar("F", bound=Callable[..., Any])


def files_option(help_text: str) -> Callable[[F], F]:
    """`-f/--file`, repeatable, a file or a directory."""
    option: Callable[[F], F] = click.option(
        "-f",
        "--file",
        "files",
        multiple=True,
        type=click.Path(path_type=Path),
        help=help_text
        + " Repeat it, or name a directory (its *.yaml/*.yml), for several accounts.",
    )
    return option


def single_file(files: Sequence[Path]) -> Path:
    if not files:
        raise click.UsageError("give the desired-state file with -f")
    return files[0]


def finish(console: Console, outcomes: Sequence[Outcome], codes: Sequence[ExitCode]) -> None:
    """Say each account's code on stderr and exit with the most severe (see `SEVERITY`)."""

    code = most_severe(codes)
    listed = ", ".join(
        f"{outcome.account.label}: {each}" for outcome, each in zip(outcomes, codes, strict=True)
    )
    line = f"{len(outcomes)} account(s), exit {code} ({listed})."
    (console.note if code == ExitCode.OK else console.error)(line)
    if code != ExitCode.OK:
        raise click.exceptions.Exit(code)


def show_plans(
    console: Console,
    outcomes: Sequence[Outcome],
    output_format: str,
    *,
    code: ExitCode = ExitCode.OK,
) -> None:
    """Every account's plan on stdout, one section each (JSON: one document)."""
    from reconciler.levret.requests import calls_for
    from reconciler.render.plan import plan_to_data
    from reconciler.run.accounts import group_json, render_group

    if output_format == "json":
        console.data(
            group_json(
                outcomes,
                lambda o: {
                    "plan": plan_to_data(o.plan, call_of=calls_for(o.plan.user_id))
                    if o.plan is not None
                    else None
                },
                code,
            )
        )
        return
    console.data(
        render_group(
            outcomes,
            lambda o: render(o.plan, output_format, console) if o.plan is not None else "",
            output_format,
        )
    )
