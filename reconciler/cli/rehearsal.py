"""`--rehearse` for `plan` and `apply`: show the rehearsal, refuse one that did not converge."""

from __future__ import annotations

from typing import Any

from reconciler.cli.console import Console
from reconciler.cli.options import render
from reconciler.errors import PreconditionFailed
from reconciler.jsonnum import dumps
from reconciler.levret.requests import calls_for
from reconciler.model.plan import Plan
from reconciler.render.plan import plan_to_data
from reconciler.run.rehearse import Rehearsal, rehearsal_data, rehearse_account, summary_lines

__all__ = ["RehearsalFailed", "rehearse_account", "show_rehearsal"]


class RehearsalFailed(PreconditionFailed):
    """Exit 3: the plan did not converge on the copy of the account; nothing was sent."""

    def __init__(self, rehearsal: Rehearsal) -> None:
        problems = [
            f"{symbol}: {r.kind} refused [{r.code}] {r.detail}" for symbol, r in rehearsal.refusals
        ]
        problems += list(rehearsal.plan.violations)
        super().__init__(
            "the rehearsal on a copy of the account did not converge "
            f"({rehearsal.report.summary()}); nothing was sent"
            + "".join(f"\n  {line}" for line in problems)
        )


def show_rehearsal(console: Console, plan: Plan, rehearsal: Rehearsal, output_format: str) -> None:
    """The plan, then the rehearsal (JSON: one document with both)."""
    if output_format == "json":
        document: dict[str, Any] = {
            "plan": plan_to_data(plan, call_of=calls_for(plan.user_id)),
            "rehearsal": rehearsal_data(rehearsal),
        }
        console.data(dumps(document).decode("utf-8"))
        return
    console.data(render(plan, output_format, console))
    text = "\n".join(summary_lines(rehearsal))
    console.data(f"```\n{text}\n```" if output_format == "markdown" else text)
