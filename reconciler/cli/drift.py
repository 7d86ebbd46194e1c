"""`reconciler drift`: does the live account still match its file? Reads only, never sends.

Exit 0 when it matches, 2 when it drifted (after `--ignore` rules), 1 on errors, so a
scheduled job can open an issue on 2 and fail loudly on anything else. A read-only key is
enough: drift plans (GET requests only) and describes the plan instead of executing it.

The planner and the client are imported when the command runs, not for `drift --help`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.console import Console
from reconciler.cli.many import files_option, finish, single_file
from reconciler.cli.options import FORMATS, endpoint_options, now_ms
from reconciler.cli.session import Session, pass_session
from reconciler.exitcodes import ExitCode, most_severe
from reconciler.run.connection import endpoint

if TYPE_CHECKING:
    from reconciler.run.accounts import Outcome
    from reconciler.run.drift import DriftReport, IgnoreRule


def _rules(values: tuple[str, ...]) -> list[IgnoreRule]:
    from reconciler.run.drift import parse_ignore

    try:
        return [parse_ignore(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--ignore") from None


@click.command("drift")
@files_option("Desired-state YAML file.")
@endpoint_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="How to render the report.",
)
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="SYMBOL[:ASPECT,...]",
    help="Known noise to leave out, e.g. BTC_USDT, SOL_USDT:orders, '*:tpsl'. Aspects: "
    "position, leverage, margin, tpsl, orders.",
)
@pass_session
def drift(
    session: Session,
    files: tuple[Path, ...],
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    ignore: tuple[str, ...],
) -> None:
    """Report how the account differs from FILE; exit 2 on drift. Sends nothing."""
    import asyncio

    from reconciler.run.accounts import is_multi, load_accounts, plan_all, single_account
    from reconciler.run.drift import detect, render_drift

    console = session.console
    rules = _rules(ignore)
    # One account is a list of one: read, planned, judged and coded by the same path.
    many = is_multi(files)
    accounts = load_accounts(files) if many else [single_account(single_file(files))]
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        outcomes = asyncio.run(plan_all(accounts, where, now_ms=now_ms()))
    reports = {
        outcome.account.label: detect(outcome.plan, rules, source=outcome.account.label)
        for outcome in outcomes
        if outcome.plan is not None
    }
    outcomes = [
        replace(outcome, code=_code(outcome, reports.get(outcome.account.label)))
        for outcome in outcomes
    ]
    if many:
        _show_many(console, outcomes, reports, output_format)
    else:
        (outcome,) = outcomes
        outcome.raise_failure()
        console.data(render_drift(reports[outcome.account.label], output_format))
        if outcome.code != ExitCode.OK:
            raise click.exceptions.Exit(outcome.code)


def _show_many(
    console: Console,
    outcomes: list[Outcome],
    reports: dict[str, DriftReport],
    output_format: str,
) -> None:
    """Several accounts: one section each (JSON: one document), a summary, the worst code."""
    from reconciler.run.accounts import group_json, render_group
    from reconciler.run.drift import drift_data, render_drift

    codes = [outcome.code for outcome in outcomes]
    if output_format == "json":
        console.data(
            group_json(
                outcomes,
                lambda o: {"drift": drift_data(reports[o.account.label]) if o.plan else None},
                most_severe(codes),
            )
        )
    else:
        console.data(
            render_group(
                outcomes,
                lambda o: render_drift(reports[o.account.label], output_format) if o.plan else "",
                output_format,
            )
        )
    finish(console, outcomes, codes)


def _code(outcome: Outcome, report: DriftReport | None) -> ExitCode:
    """Drift is exit 2; a policy violation of the would-be plan is still just drift here."""
    if outcome.error is not None or report is None:
        return outcome.code
    return ExitCode.CHANGES if report.drifted else ExitCode.OK
