"""`reconciler plan`: read the account, diff it against the file, print the calls.

One file is a run of one account: it is read, planned and given its code by the same path
as several (`reconciler.run.accounts.plan_all`); only the showing differs. With several files
(or a directory) every account is read and planned concurrently, the plans are printed one
section per account, `--out` names a directory that receives one `<file stem>.json` per
account, and the exit code is the most severe of the accounts'. With one, the plan is
printed alone and a failure ends the command as its error.

The planner, the client and the rehearsal are imported when the command runs, not when the
module loads: `plan --help` should not pay for them (and never for the sandbox server, which
only `--sandbox` and `--rehearse` start).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.console import Console
from reconciler.cli.many import files_option, finish, show_plans, single_file
from reconciler.cli.options import (
    endpoint_options,
    format_option,
    now_ms,
    render,
    write_private,
)
from reconciler.cli.session import Session, pass_session
from reconciler.errors import PolicyViolation, ReconcilerError
from reconciler.exitcodes import ExitCode, most_severe
from reconciler.run.connection import client_settings, endpoint

if TYPE_CHECKING:
    from reconciler.run.accounts import Outcome


@click.command("plan")
@files_option("Desired-state YAML file.")
@endpoint_options
@format_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Save the plan (several accounts: a directory receiving <file stem>.json each).",
)
@click.option("--target", multiple=True, metavar="SYMBOL", help="Plan only these symbols.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes (0 when none)."
)
@click.option(
    "--allow-flatten",
    is_flag=True,
    help="Allow a plan that closes every position, or more than policy.max_closes.",
)
@click.option(
    "--rehearse",
    is_flag=True,
    help="Also run the plan on an in-process copy of the account and show what happened "
    "(nothing is sent to the exchange); exit 3 if the copy did not converge.",
)
@pass_session
def plan(
    session: Session,
    files: tuple[Path, ...],
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    out: Path | None,
    target: tuple[str, ...],
    detailed_exitcode: bool,
    allow_flatten: bool,
    rehearse: bool,
) -> None:
    """Show the calls that would make the account match FILE."""
    import asyncio

    from reconciler.run.accounts import is_multi, load_accounts, plan_all, single_account

    console = session.console
    many = is_multi(files)
    if rehearse and many:
        raise click.UsageError("--rehearse takes one file")
    # One account is a list of one: read, planned and given its code by the same path;
    # only what is shown differs. A bad file stops here: nothing is read or sent.
    if many:
        accounts = load_accounts(files, target)  # every file valid, or nothing is read
        if out is not None and out.exists() and not out.is_dir():
            raise ReconcilerError(f"--out {out}: with several accounts, give a directory")
    else:
        accounts = [single_account(single_file(files), target)]
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        outcomes = asyncio.run(
            plan_all(accounts, where, now_ms=now_ms(), allow_flatten=allow_flatten)
        )
    outcomes = [replace(outcome, code=_code(outcome, detailed_exitcode)) for outcome in outcomes]
    if many:
        _show_many(console, outcomes, output_format, out)
    else:
        (outcome,) = outcomes
        _show_one(console, outcome, output_format, out, sandbox, base_url, rehearse)


def _show_one(
    console: Console,
    outcome: Outcome,
    output_format: str,
    out: Path | None,
    sandbox: bool,
    base_url: str | None,
    rehearse: bool,
) -> None:
    """One account: its plan alone on stdout, its failure as the command's error."""
    import asyncio

    from reconciler.cli.rehearsal import RehearsalFailed, rehearse_account, show_rehearsal
    from reconciler.levret.requests import calls_for
    from reconciler.render.plan import render_json

    outcome.raise_failure()
    result = outcome.plan
    assert result is not None  # planned, since it did not fail
    if out is not None:
        write_private(out, render_json(result, call_of=calls_for(result.user_id)))
        console.note(f"Saved the plan to {out}.")
    if rehearse and not result.violations:
        desired = outcome.account.desired
        with endpoint(sandbox=sandbox, base_url=base_url) as where:
            rehearsal = asyncio.run(rehearse_account(client_settings(where, desired), desired))
        show_rehearsal(console, result, rehearsal, output_format)
        if not rehearsal.converged:
            raise RehearsalFailed(rehearsal)
    else:
        console.data(render(result, output_format, console))
    if result.violations:
        raise PolicyViolation(list(result.violations))
    if outcome.code != ExitCode.OK:
        raise click.exceptions.Exit(outcome.code)


def _show_many(
    console: Console, outcomes: list[Outcome], output_format: str, out: Path | None
) -> None:
    """Several accounts: one section each, saved plans in `out/`, a summary and the worst code."""
    from reconciler.levret.requests import calls_for
    from reconciler.render.plan import render_json
    from reconciler.run.accounts import plan_file_name

    if out is not None:
        for outcome in outcomes:
            if outcome.plan is not None:
                write_private(
                    out / plan_file_name(outcome.account),
                    render_json(outcome.plan, call_of=calls_for(outcome.plan.user_id)),
                )
        console.note(f"Saved the plans to {out}/.")
    codes = [outcome.code for outcome in outcomes]
    show_plans(console, outcomes, output_format, code=most_severe(codes))
    finish(console, outcomes, codes)


def _code(outcome: Outcome, detailed_exitcode: bool) -> ExitCode:
    """The account's code: with `--detailed-exitcode`, 2 for a plan with changes."""
    planned = outcome.plan
    if (
        outcome.code == ExitCode.OK
        and detailed_exitcode
        and planned
        and (planned.actions or planned.infeasible)
    ):
        return ExitCode.CHANGES
    return outcome.code
