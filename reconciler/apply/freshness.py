"""Freshness: a plan is sent only while the account and the marks are what it was made from."""

from __future__ import annotations

from decimal import Decimal

from reconciler.defaults import DEFAULT_MAX_PLAN_AGE_MS, DEFAULT_MAX_PRICE_MOVE_BPS
from reconciler.errors import PreconditionFailed
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot

__all__ = ["check_fresh"]


def check_fresh(
    plan: Plan,
    snapshot_now: Snapshot,
    *,
    now_ms: int,
    max_age_ms: int = DEFAULT_MAX_PLAN_AGE_MS,
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS,
) -> None:
    """Refuse (`PreconditionFailed`, exit 3) a plan the account has moved away from.

    A saved plan is a promise about one moment: its calls (cancel order 42, close position 7,
    buy 0.5) are only right if the symbols they touch still look as they did. Every problem
    is listed at once.
    """
    problems: list[str] = []
    if plan.user_id != snapshot_now.user_id:
        problems.append(f"plan is for user {plan.user_id!r}, the key is {snapshot_now.user_id!r}")
    if plan.created_at_ms is None:
        problems.append("plan has no creation time, so its age cannot be checked")
    elif now_ms - plan.created_at_ms > max_age_ms:
        age_s = (now_ms - plan.created_at_ms) / 1000
        problems.append(
            f"plan is {age_s:.0f} s old, more than the {max_age_ms / 1000:.0f} s allowed"
        )
    touched = sorted({action.symbol for action in plan.actions})
    for symbol in touched:
        planned = plan.symbol_fingerprints.get(symbol)
        if planned is None:
            problems.append(f"{symbol}: plan has no fingerprint for it")
        elif planned != snapshot_now.symbol_fingerprint(symbol):
            problems.append(f"{symbol}: positions or open orders changed since the plan")
    for symbol in touched:  # an untouched symbol's price cannot make these calls wrong
        planned_mark = plan.marks.get(symbol)
        if planned_mark is None:
            continue
        now = snapshot_now.mark(symbol)
        if now is None:
            problems.append(f"{symbol}: no current mark to compare with the plan's {planned_mark}")
            continue
        if planned_mark <= 0:
            continue
        moved_bps = abs(now - planned_mark) / planned_mark * 10_000
        if moved_bps > max_price_move_bps:
            problems.append(
                f"{symbol}: mark moved {moved_bps:.1f} bps ({planned_mark} -> {now}), "
                f"more than {max_price_move_bps} bps"
            )
    if problems:
        raise PreconditionFailed("the plan is stale; re-run plan:\n" + "\n".join(problems))
