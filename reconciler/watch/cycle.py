"""What one reconcile cycle of the watcher did: its result and its report.

The watcher keeps every cycle's report (`Watcher.reports`), and tests await them instead of
sleeping; the result labels are also the `result` label of the cycle metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from reconciler.apply.report import ApplyReport
from reconciler.model.plan import Action

__all__ = ["CycleReport", "CycleResult", "brief"]

CycleResult = Literal["in_sync", "healed", "not_converged", "held", "error", "interrupted"]


@dataclass(frozen=True)
class CycleReport:
    """One reconcile cycle: what started it, what the plan said, what was done about it."""

    number: int
    triggers: tuple[str, ...]
    started_at: datetime
    result: CycleResult
    drift: int = 0  # calls the plan needed at the start of the cycle
    held: str | None = None  # why drift was left alone (`report_only`, `window`, ...)
    detail: str = ""
    apply: ApplyReport | None = None


def brief(action: Action) -> str:
    """One change in the log's words: `BTC_USDT place_order: <why>`."""
    return f"{action.symbol} {action.kind}: {action.reason}"
