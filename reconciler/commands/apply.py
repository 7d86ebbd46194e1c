"""`reconciler apply`: plan (or load a saved plan), confirm, execute, verify.

`apply -f FILE` plans now and asks for `yes`; `apply PLAN.json` executes a plan reviewed
earlier (for example in a pull request) only if the account still looks as it did then.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import click

from reconciler.actions import Plan
from reconciler.apply import (
    DEFAULT_MAX_PRICE_MOVE_BPS,
    ApplyReport,
    run_apply,
)
from reconciler.commands.options import endpoint_options, format_option, now_ms, render
from reconciler.connection import STATE_DIR, client_settings, endpoint
from reconciler.console import Console
from reconciler.errors import Declined, PolicyViolation, ReconcilerError
from reconciler.exchange.client import LevretClient
from reconciler.exchange.settings import ClientSettings
from reconciler.progress import PlainProgress, ProgressSink, RichProgress
from reconciler.reader import read_snapshot
from reconciler.render import load_plan
from reconciler.spec import DesiredState, load
from reconciler.workflow import narrow, plan_account

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str) -> int:
    """`15m`, `90s`, `1h`, `500ms`; a bare number is seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 15m, 90s or 1h")
    value, unit = match.groups()
    return int(Decimal(value) * _UNIT_MS[unit or "s"])


def _confirm(console: Console, plan: Plan) -> None:
    console.note(
        f"\nDo you want to make these {len(plan.actions)} call(s) on account {plan.user_id}?\n"
        "Only 'yes' will be accepted."
    )
    try:
        answer = click.prompt("Enter a value", default="", show_default=False, err=True)
    except click.exceptions.Abort:
        answer = ""
    if answer.strip() != "yes":
        raise Declined("apply cancelled: nothing was sent")


async def _apply(
    settings: ClientSettings,
    desired: DesiredState,
    plan: Plan,
    *,
    progress: ProgressSink,
    journal: Path | None,
    max_plan_age_ms: int,
    max_price_move_bps: Decimal,
    parallelism: int,
    max_passes: int,
) -> ApplyReport:
    async with LevretClient(settings) as client:
        return await run_apply(
            plan,
            client=client,
            desired=desired,
            read_snapshot=read_snapshot,
            state_dir=STATE_DIR,
            journal_path=journal,
            max_age_ms=max_plan_age_ms,
            max_price_move_bps=max_price_move_bps,
            parallelism=parallelism,
            max_passes=max_passes,
            progress=progress,
        )


def _saved_plan(plan_file: Path) -> Plan:
    try:
        return load_plan(plan_file.read_bytes())
    except (OSError, ValueError) as error:
        raise ReconcilerError(f"{plan_file}: not a saved plan: {error}") from None


@click.command("apply")
@click.argument(
    "plan_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Desired-state YAML file (with a saved plan: the file it was planned from).",
)
@endpoint_options
@format_option
@click.option("--auto-approve", is_flag=True, help="Skip the `yes` prompt (for CI).")
@click.option("--target", multiple=True, metavar="SYMBOL", help="Apply only these symbols.")
@click.option(
    "--max-plan-age",
    default="15m",
    show_default=True,
    help="Refuse a saved plan older than this.",
)
@click.option(
    "--max-price-move-bps",
    type=Decimal,
    default=DEFAULT_MAX_PRICE_MOVE_BPS,
    show_default=True,
    help="Refuse a saved plan whose marks moved more than this.",
)
@click.option("--parallelism", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--max-passes", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal file (default .reconciler/journal/<user>-<time>.jsonl).",
)
def apply(
    plan_file: Path | None,
    file: Path | None,
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    auto_approve: bool,
    target: tuple[str, ...],
    max_plan_age: str,
    max_price_move_bps: Decimal,
    parallelism: int,
    max_passes: int,
    journal: Path | None,
) -> None:
    """Make the account match FILE, or execute the saved PLAN_FILE."""
    console = Console()
    if file is None:
        raise click.UsageError("give the desired-state file with -f (also for a saved plan)")
    max_age_ms = parse_duration_ms(max_plan_age)
    desired = narrow(load(file), target)  # a bad file stops here: nothing is read or sent
    saved = _saved_plan(plan_file) if plan_file is not None else None

    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        settings = client_settings(where, desired)
        if saved is None:
            plan = asyncio.run(plan_account(settings, desired, now_ms=now_ms()))
            console.data(render(plan, output_format, console))
        else:
            plan = saved
            console.note(f"Applying the saved plan {plan_file} ({len(plan.actions)} call(s)).")
        if plan.violations:
            raise PolicyViolation(list(plan.violations))
        if not plan.actions:
            console.note("No changes. The account already matches the file.")
            return
        if saved is None and not auto_approve:
            _confirm(console, plan)
        with ExitStack() as stack:
            progress: ProgressSink
            if console.interactive:
                progress = stack.enter_context(RichProgress(console.err))
            else:
                progress = PlainProgress(console.err)
            report = asyncio.run(
                _apply(
                    settings,
                    desired,
                    plan,
                    progress=progress,
                    journal=journal,
                    max_plan_age_ms=max_age_ms,
                    max_price_move_bps=max_price_move_bps,
                    parallelism=parallelism,
                    max_passes=max_passes,
                )
            )
    if report.exit_code != 0:
        report.raise_for_status()
    console.note("Apply complete: converged.")
