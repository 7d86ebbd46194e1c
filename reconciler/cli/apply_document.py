"""`apply --format json`: one JSON document of what apply meant to do and what happened.

A CI step that parses apply's output needs the outcome, not only the plan: every planned
call's fate (accepted, refused with the exchange's code, unknown and how settlement decided
it, never sent), the passes, whether the account converged, and where the journal is. One
document on stdout, written once apply is over, so `apply --format json > result.json` is
always valid JSON, whatever happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.apply.report import ActionResult, ApplyReport
from reconciler.exitcodes import ExitCode
from reconciler.jsonnum import dumps
from reconciler.levret.requests import calls_for
from reconciler.model.plan import Plan
from reconciler.render.plan import plan_to_data

__all__ = ["apply_document", "render_apply_document"]


def _settlement(result: ActionResult) -> dict[str, Any] | None:
    if result.settlement is None:
        return None
    return {
        "executed": result.settlement.executed,
        "outcome": result.settlement.outcome,
        "reads": result.settlement.reads,
        "order_ids": sorted(result.settlement.order_ids),
        "evidence": result.settlement.evidence,
    }


def _result(result: ActionResult) -> dict[str, Any]:
    return {
        "pass": result.pass_number,
        "index": result.index,
        "symbol": result.action.symbol,
        "kind": result.action.kind,
        "phase": result.action.phase.label,
        "outcome": result.outcome,
        "status": result.status,
        "code": result.code,
        "detail": result.detail,
        "path": result.path,
        "settlement": _settlement(result),
    }


def apply_document(
    plan: Plan,
    report: ApplyReport | None,
    *,
    result: str,
    exit_code: ExitCode,
    message: str | None = None,
) -> dict[str, Any]:
    """`result` names the ending (`converged`, `no_changes`, `interrupted`, ...)."""
    journal: Path | None = report.journal_path if report is not None else None
    return {
        "format_version": 1,
        "result": result,
        "exit_code": int(exit_code),
        "message": message,
        "converged": report.converged if report is not None else result == "no_changes",
        "interrupted": report.interrupted if report is not None else False,
        "journal": str(journal) if journal is not None else None,
        "plan": plan_to_data(plan, call_of=calls_for(plan.user_id)),
        "passes": [
            {"number": item.number, "calls": len(item.results)}
            for item in (report.passes if report is not None else ())
        ],
        "actions": [_result(item) for item in (report.results if report is not None else ())],
        "counts": report.counts() if report is not None else {},
        "rate_limited": report.rate_limited if report is not None else 0,
        "remaining": [
            {"symbol": action.symbol, "kind": action.kind, "reason": action.reason}
            for action in (report.remaining if report is not None else ())
        ],
        "excluded": dict(report.excluded) if report is not None else {},
        "problems": list(report.problems) if report is not None else [],
        "infeasible": list(plan.infeasible),
    }


def render_apply_document(document: dict[str, Any]) -> str:
    return dumps(document).decode("utf-8") + "\n"
