"""A saved plan is a proposal: what runs is a plan made now, and only if it makes the same calls."""

from __future__ import annotations

from planner_support import desired, position, snapshot

from reconciler.apply.proposal import first_difference
from reconciler.levret.requests import calls_for
from reconciler.plan import plan

WANT = "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.5, leverage: 10}\n"


def test_the_same_intents_for_another_user_are_not_the_saved_plan() -> None:
    """Intents name no account: a plan reviewed for one user must not run for another's,
    whose calls (`userId` in the body) nobody saw."""
    live = [position("BTC_USDT", "long", "0.2", leverage=10)]
    saved = plan(desired(WANT), snapshot(live))
    other = saved.model_copy(update={"user_id": "someone-else"})
    assert [a.intent for a in other.actions] == [a.intent for a in saved.actions]
    difference = first_difference(saved, other, calls_for(other.user_id))
    assert difference is not None and "someone-else" in difference
    assert first_difference(saved, saved, calls_for(saved.user_id)) is None
