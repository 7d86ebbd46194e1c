"""The gates that decide whether watch may heal a drift now, in the order they are asked.

1. `--self-heal`: without it the watcher only reports (`report_only`);
2. the plan's policy violations: a plan that breaks the file's policy is never executed;
3. the change windows of the file (`reconciler.model.windows`): paused, denied, or outside
   every allow rule;
4. the circuit breaker (`reconciler.watch.breaker`): the plan must fit in the rolling budget,
   and a breaker tripped by failed applies stays open until a restart.

The first gate that refuses names the reason (the `reason` label of `heal_held`); the
breaker's opening is counted and logged once, when it happens, not on every held cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from reconciler.model.plan import Action, Plan
from reconciler.model.windows import WindowDecision
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.eventlog import EventLog
from reconciler.watch.metrics import WatchMetrics

__all__ = ["heal_held", "notional"]


def notional(actions: Iterable[Action]) -> Decimal:
    """What the breaker's budget counts of some calls: the sum of their absolute notionals."""
    return sum((abs(action.notional) for action in actions), Decimal(0))


def heal_held(
    plan: Plan,
    window: WindowDecision,
    now: datetime,
    *,
    self_heal: bool,
    breaker: CircuitBreaker,
    metrics: WatchMetrics,
    log: EventLog,
) -> tuple[str, str] | None:
    """Why this drift must not be healed now, or None: (reason label, detail).

    Asking the breaker spends nothing (a heal's calls are recorded once sent); a refusal opens
    it, and its opening is counted and logged once.
    """
    if not self_heal:
        return "report_only", "run with --self-heal to heal"
    if plan.violations:
        return "policy", "; ".join(plan.violations)
    if not window.allowed:
        return ("pause" if window.hold == "pause" else "window"), window.reason
    was_open = breaker.state == "open"
    admission = breaker.admit(len(plan.actions), notional(plan.actions), now)
    if not admission.allowed:
        if not was_open:
            reason = breaker.open_reason or "budget"
            metrics.breaker_trips.labels(reason=reason).inc()
            log.warning("breaker_open", reason=admission.reason)
        metrics.breaker_open.set(1)
        return "breaker", admission.reason
    metrics.breaker_open.set(0)
    return None
