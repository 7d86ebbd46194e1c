"""`reconciler show PLAN.json [-f FILE]`: render a saved plan, judged afresh, e.g. in a PR.

A stored "ok" is never taken on trust: the saved requests are judged again
(`reconciler.apply.proposal.saved_violations`), by FILE's policy when `-f` names it, and checked
against their own notional in any case. Exit 4 when anything is wrong, as `plan`.

The plan models and the policy checks are imported when the command runs, not for `--help`.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.options import format_option, render
from reconciler.cli.session import Session, pass_session
from reconciler.errors import PolicyViolation, ReconcilerError


@click.command("show")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-f",
    "--file",
    "desired_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The desired-state file whose policy the saved calls are checked against.",
)
@format_option
@pass_session
def show(session: Session, plan_file: Path, desired_file: Path | None, output_format: str) -> None:
    """Render the saved plan PLAN_FILE, its calls checked against the policy again."""
    from reconciler.apply.proposal import saved_violations
    from reconciler.levret.requests import calls_for
    from reconciler.model.desired import load
    from reconciler.render.plan import load_plan

    console = session.console
    desired = load(desired_file) if desired_file is not None else None
    try:
        saved = load_plan(plan_file.read_bytes(), calls_for=calls_for)
    except ValueError as error:
        raise ReconcilerError(f"{plan_file}: not a saved plan: {error}") from None
    found = [v for v in saved_violations(saved, desired) if v not in saved.violations]
    judged = saved.model_copy(update={"violations": (*saved.violations, *found)})
    console.data(render(judged, output_format, console))
    if desired is None:
        console.note(
            "The calls were checked against their own figures only; give -f FILE to check "
            "them against FILE's policy (apply plans again before it sends anything)."
        )
    if judged.violations:
        raise PolicyViolation(list(judged.violations))
