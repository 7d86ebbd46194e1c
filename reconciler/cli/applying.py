"""What `reconciler apply` does once its options are read (see `reconciler.cli.apply`).

Kept apart from the command's definition so that `apply --help` and the root help load
neither the apply engine nor the client: the command imports this module when it runs.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import click

from reconciler.apply.events import NullProgress, ProgressSink
from reconciler.apply.report import ApplyFailed, ApplyReport
from reconciler.cli.apply_document import apply_document, render_apply_document
from reconciler.cli.console import Console
from reconciler.cli.many import finish, show_plans, single_file
from reconciler.cli.options import (
    lock_settings,
    now_ms,
    parse_duration_ms,
    parse_visibility_timeout,
    render,
)
from reconciler.cli.rehearsal import RehearsalFailed
from reconciler.errors import Declined, PartialApply, PolicyViolation, ReconcilerError
from reconciler.exitcodes import ExitCode
from reconciler.levret.requests import calls_for
from reconciler.model.desired import DesiredState, load
from reconciler.model.plan import Plan
from reconciler.render.plan import load_plan
from reconciler.render.progress import PlainProgress, RichProgress
from reconciler.run.accounts import (
    Outcome,
    apply_all,
    changes_remaining,
    declined,
    header,
    is_multi,
    load_accounts,
    load_saved_plans,
    needs_apply,
    plan_all,
    with_saved_plans,
)
from reconciler.run.connection import client_settings, endpoint, lock_scope
from reconciler.run.lock import account_lock
from reconciler.run.rehearse import actual_fills, comparison_lines, rehearse_account, summary_lines
from reconciler.run.workflow import ApplyOptions, apply_account, narrow, plan_account

NO_TERMINAL = "confirmation needs a terminal; use --auto-approve"


def _confirm(console: Console, plan: Plan, *, where: str = "", no_input: bool = False) -> None:
    """Ask for `yes` on a terminal; with none (or `--no-input`) refuse, never read a pipe.

    A pipe or `/dev/null` is not a person: reading "no" from it would report a decline the
    user never made, and a CI job without `--auto-approve` deserves a clear error, exit 1.
    """
    if no_input or not _stdin_is_terminal():
        raise ReconcilerError(f"{NO_TERMINAL}: nothing was sent")
    # The question that guards sending money is never dropped, `--quiet` or not: a bare
    # "Enter a value" would not say how many calls, on which account.
    console.error(
        f"\nDo you want to make these {len(plan.actions)} call(s) on account "
        f"{plan.user_id}{where}?\n"
        "Only 'yes' will be accepted."
    )
    try:
        answer = click.prompt("Enter a value", default="", show_default=False, err=True)
    except click.exceptions.Abort:
        answer = ""
    if answer.strip() != "yes":
        raise Declined("apply cancelled: nothing was sent")


def _stdin_is_terminal() -> bool:
    isatty = getattr(sys.stdin, "isatty", None)
    return bool(isatty and isatty())


def _saved_plan(plan_file: Path) -> Plan:
    try:
        return load_plan(plan_file.read_bytes(), calls_for=calls_for)
    except (OSError, ValueError) as error:
        raise ReconcilerError(f"{plan_file}: not a saved plan: {error}") from None


def apply_from_options(
    console: Console,
    plan_file: Path | None,
    files: tuple[Path, ...],
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    auto_approve: bool,
    no_input: bool,
    target: tuple[str, ...],
    max_plan_age: str,
    max_price_move_bps: Decimal,
    allow_flatten: bool,
    parallelism: int | None,
    max_passes: int,
    visibility_timeout: str | None,
    journal: Path | None,
    lock_dsn: str | None,
    lock_timeout: str,
    rehearse: bool,
) -> None:
    """Run apply with the run's console and the command line's values (`apply`'s parameters)."""
    if rehearse and (is_multi(files) or plan_file is not None):
        raise click.UsageError("--rehearse takes one file and plans afresh (no saved plan)")
    if not files:
        raise click.UsageError("give the desired-state file with -f (also for a saved plan)")
    options = ApplyOptions(
        max_plan_age_ms=parse_duration_ms(max_plan_age),
        max_price_move_bps=max_price_move_bps,
        parallelism=parallelism,
        max_passes=max_passes,
        visibility_timeout_s=parse_visibility_timeout(visibility_timeout),
        lock=lock_settings(lock_dsn, lock_timeout),
        allow_flatten=allow_flatten,
    )
    if is_multi(files):
        if journal is not None:
            raise click.UsageError("--journal names one file: not with several accounts")
        _apply_many(
            console,
            files,
            plan_file,
            sandbox=sandbox,
            base_url=base_url,
            output_format=output_format,
            auto_approve=auto_approve,
            no_input=no_input,
            target=target,
            options=options,
        )
        return
    if plan_file is not None and plan_file.is_dir():
        raise click.UsageError("a plan directory goes with several files or a directory in -f")
    desired = narrow(load(single_file(files)), target)  # a bad file stops here: nothing sent
    saved = _saved_plan(plan_file) if plan_file is not None else None

    run = _Run()
    try:
        _apply_one(
            console, run, desired, saved, plan_file, sandbox=sandbox, base_url=base_url,
            output_format=output_format, auto_approve=auto_approve, no_input=no_input,
            allow_flatten=allow_flatten, journal=journal, options=options, rehearse=rehearse,
        )  # fmt: skip
    except ReconcilerError as error:
        _emit_json(console, run, output_format, error.exit_code, str(error))
        raise
    except click.exceptions.Exit as done:
        _emit_json(console, run, output_format, ExitCode(done.exit_code), None)
        raise
    _emit_json(console, run, output_format, ExitCode.OK, None)


@dataclass
class _Run:
    """What a single-account apply got to: its plan, and the report once it ran."""

    plan: Plan | None = None
    report: ApplyReport | None = None


def _emit_json(
    console: Console, run: _Run, output_format: str, exit_code: ExitCode, message: str | None
) -> None:
    """With `--format json`, the one document on stdout, whatever the ending."""
    if output_format != "json" or run.plan is None:
        return
    report = run.report
    if report is not None:
        ending = (
            "interrupted"
            if report.interrupted
            else "converged"
            if report.converged
            else "not_converged"
        )
    elif run.plan.violations:
        ending = "policy_violation"
    elif not run.plan.actions:
        ending = "no_changes"
    else:
        ending = "not_applied"
    if exit_code == ExitCode.CHANGES:  # applied what could be; some changes cannot be made
        ending = "changes_remain"
    document = apply_document(run.plan, report, result=ending, exit_code=exit_code, message=message)
    console.data(render_apply_document(document))


def _apply_one(
    console: Console,
    run: _Run,
    desired: DesiredState,
    saved: Plan | None,
    plan_file: Path | None,
    *,
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    auto_approve: bool,
    no_input: bool,
    allow_flatten: bool,
    journal: Path | None,
    options: ApplyOptions,
    rehearse: bool = False,
) -> None:
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        settings = client_settings(where, desired)
        options = replace(options, lock=replace(options.lock, scope=lock_scope(where)))
        # The lock comes first: the plan is made, shown and applied under it, so an apply
        # that waited for another finds what that one left, not a plan made before it.
        lock = account_lock(
            desired.lock,
            options.lock,
            base_url=settings.base_url,
            user_id=settings.user_id,
            on_wait=console.note,
        )
        with lock:
            if saved is None:
                plan = asyncio.run(
                    plan_account(settings, desired, now_ms=now_ms(), allow_flatten=allow_flatten)
                )
                if output_format != "json":  # json: one document once apply is over
                    console.data(render(plan, output_format, console))
            else:
                plan = saved
                console.note(f"Applying the saved plan {plan_file} ({len(plan.actions)} call(s)).")
            run.plan = plan
            if plan.violations:
                raise PolicyViolation(list(plan.violations))
            if not plan.actions:
                if plan.infeasible:
                    _changes_remain(console, plan)
                console.note("No changes. The account already matches the file.")
                return
            rehearsal = None
            if rehearse:
                rehearsal = asyncio.run(rehearse_account(settings, desired))
                shown = "\n".join(summary_lines(rehearsal))
                if output_format == "json":  # stdout holds the one document: notes get it
                    console.note(shown)
                else:
                    console.data(shown)
                if not rehearsal.converged:
                    raise RehearsalFailed(rehearsal)
            if saved is None and not auto_approve:
                _confirm(console, plan, no_input=no_input)
            started_ms = now_ms()
            with ExitStack() as stack:
                progress: ProgressSink
                if console.quiet:
                    progress = NullProgress()
                elif console.interactive:
                    progress = stack.enter_context(RichProgress(console.err))
                else:
                    progress = PlainProgress(console.err)
                try:
                    report = asyncio.run(
                        apply_account(
                            settings,
                            desired,
                            plan,
                            progress=progress,
                            journal=journal,
                            options=options,
                            lock=lock,
                            saved=saved is not None,
                        )
                    )
                except ApplyFailed as failed:
                    report = failed.report
                run.report = report
            if rehearsal is not None:  # the exchange is still reachable here
                symbols = [result.symbol for result in rehearsal.symbols]
                actual = asyncio.run(actual_fills(settings, symbols, started_ms))
                console.note("\n".join(comparison_lines(rehearsal, actual)))
    if report.exit_code != ExitCode.OK:
        _failed(console, report)
    if plan.infeasible:
        console.note("Apply complete: the rest converged.")
        _changes_remain(console, plan)
    console.note("Apply complete: converged.")


def _failed(console: Console, report: ApplyReport) -> None:
    """The table of what happened, then the one-line summary as the last line printed.

    Exit 5 when anything reached the exchange; an apply interrupted before its first call
    sent nothing, so it is a plain error (exit 1). The table is part of the error, so
    `--quiet` keeps it: which symbol, which call, which code.
    """
    console.error(report.table())
    sent = any(result.outcome != "not_sent" for result in report.results)
    summary = f"apply {report.summary()}"
    if report.interrupted and not sent:
        raise ReconcilerError(f"{summary}; nothing was sent")
    raise PartialApply(summary)


def _changes_remain(console: Console, plan: Plan) -> None:
    """Exit 2: symbols whose change cannot be made exactly were left alone, as reported."""
    console.note("Changes remain: these symbols were left alone:")
    for problem in plan.infeasible:
        console.note(f"  - {problem}")
    raise click.exceptions.Exit(ExitCode.CHANGES)


def _apply_many(
    console: Console,
    files: tuple[Path, ...],
    plan_dir: Path | None,
    *,
    sandbox: bool,
    base_url: str | None,
    output_format: str,
    auto_approve: bool,
    no_input: bool,
    target: tuple[str, ...],
    options: ApplyOptions,
) -> None:
    accounts = load_accounts(files, target)  # every file valid, or nothing is read or sent
    if plan_dir is not None and not plan_dir.is_dir():
        raise click.UsageError("with several accounts, give the directory `plan --out` wrote")
    saved = load_saved_plans(plan_dir, accounts) if plan_dir is not None else None
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        options = replace(options, lock=replace(options.lock, scope=lock_scope(where)))
        if saved is None:
            outcomes = asyncio.run(
                plan_all(accounts, where, now_ms=now_ms(), allow_flatten=options.allow_flatten)
            )
            show_plans(console, outcomes, output_format)
        else:
            outcomes = with_saved_plans(accounts, where, saved)
            console.note(f"Applying the saved plans in {plan_dir}.")
        if saved is None and not auto_approve:
            asks = any(needs_apply(outcome) for outcome in outcomes)
            if asks and (no_input or not _stdin_is_terminal()):
                raise ReconcilerError(f"{NO_TERMINAL}: nothing was sent")
            outcomes = [
                outcome
                if not needs_apply(outcome) or _approved(console, outcome)
                else declined(outcome)
                for outcome in outcomes
            ]
        outcomes = asyncio.run(apply_all(outcomes, options=options, log=console.notes))
    outcomes = [changes_remaining(outcome) for outcome in outcomes]
    for outcome in outcomes:
        # What went wrong on an account is an error (kept under `--quiet`); a success is a note.
        if outcome.report is not None:
            failed = outcome.report.exit_code != ExitCode.OK
            say = console.error if failed else console.note
            say(f"{header(outcome)}: {outcome.report.summary()}")
            if failed:
                console.error(outcome.report.table())
        elif outcome.error is not None:
            console.error(f"{header(outcome)}: {outcome.error}")
        elif outcome.plan is not None and outcome.plan.violations:
            console.error(f"{header(outcome)}: policy violation, nothing was sent")
        if outcome.code == ExitCode.CHANGES and outcome.plan is not None:
            console.note(f"{header(outcome)}: changes remain, these symbols were left alone:")
            for problem in outcome.plan.infeasible:
                console.note(f"  - {problem}")
    finish(console, outcomes, [outcome.code for outcome in outcomes])
    console.note("Apply complete: every account converged.")


def _approved(console: Console, outcome: Outcome) -> bool:
    assert outcome.plan is not None
    try:
        _confirm(console, outcome.plan, where=f" ({outcome.account.label})")
    except Declined:
        return False
    return True
