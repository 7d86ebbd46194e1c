"""`reconciler apply`: plan (or load a saved plan), confirm, execute, verify.

`apply -f FILE` plans now and asks for `yes`; `apply PLAN.json` executes a plan reviewed
earlier (for example in a pull request) only if a plan made now from the live account and
FILE makes exactly the same calls (see `reconciler.apply.proposal`) and the account still looks as
it did then. An edited plan is never sent as stored.

Several files (or a directory) apply every account: all are planned concurrently and shown
one section per account; without `--auto-approve` each account with changes is asked for
`yes` in turn (a `no` declines that account only, exit 7); the approved accounts are then
applied concurrently. `apply PLAN_DIR -f DIR` applies the saved plans `plan -f DIR --out
PLAN_DIR` wrote, each checked for freshness against its own account.

This module is only the command's options; the work is in `reconciler.cli.applying`,
imported when the command runs, so `apply --help` loads no engine, client or server.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from reconciler.cli.many import files_option
from reconciler.cli.options import (
    endpoint_options,
    format_option,
    lock_options,
    parallelism_option,
    visibility_timeout_option,
)
from reconciler.cli.session import Session, pass_session
from reconciler.cli.stopping import stop_signals_like_ctrl_c
from reconciler.defaults import DEFAULT_MAX_PRICE_MOVE_BPS


@click.command("apply")
@click.argument("plan_file", required=False, type=click.Path(exists=True, path_type=Path))
@files_option("Desired-state YAML file (with a saved plan: the file it was planned from).")
@endpoint_options
@format_option
@click.option("--auto-approve", is_flag=True, help="Skip the `yes` prompt (for CI).")
@click.option(
    "--no-input",
    is_flag=True,
    help="Never prompt: without --auto-approve, exit 1 instead of asking for `yes`.",
)
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
@click.option(
    "--allow-flatten",
    is_flag=True,
    help="Allow a plan that closes every position, or more than policy.max_closes.",
)
@parallelism_option
@click.option("--max-passes", type=click.IntRange(1, 10), default=3, show_default=True)
@visibility_timeout_option
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal file (default .reconciler/journal/<user>-<time>.jsonl).",
)
@lock_options
@click.option(
    "--rehearse",
    is_flag=True,
    help="Run the plan on an in-process copy of the account first; send nothing (exit 3) "
    "unless the copy converged, then show predicted against actual fills.",
)
@pass_session
def apply(session: Session, /, **params: Any) -> None:
    """Make the account match FILE, or execute the saved PLAN_FILE (or plan directory)."""
    from reconciler.cli.applying import apply_from_options

    with stop_signals_like_ctrl_c():
        # The parameters, with their types, are `apply_from_options`'s: they are named once.
        apply_from_options(session.console, **params)
