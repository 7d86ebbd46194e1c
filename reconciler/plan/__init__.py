"""Planning: `plan(desired, snapshot) -> Plan`, a pure function (see `planner`)."""

from reconciler.plan.planner import TAKER_FEE_RATE, enforce, plan, symbols_placing_orders

__all__ = ["TAKER_FEE_RATE", "enforce", "plan", "symbols_placing_orders"]
