"""Worst-case exposure: a position plus every resting order that could fill the same way.

`max_gross_notional` and `max_order_notional` guard against what the account could hold, not
only what it holds: ten resting 1-BTC buys are ten BTC of exposure the first dip fills at
once. Per symbol, buys (not reduce-only) push the position up and sells push it down; the
worst case is the larger of the two ends, in USDT (the position at the mark, each order at
its own price). Reduce-only orders can only shrink a position, so they never count.

Pure: the planner's predicted positions and resting orders in, numbers out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from reconciler.model.intents import Intent, PlaceOrder

__all__ = ["Resting", "resting_of", "resting_side_notional", "worst_case_gross"]


@dataclass(frozen=True)
class Resting:
    """A resting limit order as the caps see it."""

    side: str
    price: Decimal
    size: Decimal
    reduce_only: bool


def resting_of(intent: Intent) -> Resting | None:
    """The resting order `intent` leaves, if it places a limit order."""
    if isinstance(intent, PlaceOrder) and intent.order_type == "limit" and intent.price is not None:
        return Resting(intent.side, intent.price, intent.size, intent.reduce_only)
    return None


def resting_side_notional(orders: Iterable[Resting], side: str) -> Decimal:
    """USDT of every order on `side` that could open or add (reduce-only ones cannot)."""
    return sum(
        (o.price * o.size for o in orders if o.side == side and not o.reduce_only), Decimal(0)
    )


def worst_case_gross(
    positions: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    orders: Mapping[str, list[Resting]],
) -> Decimal:
    """Sum over symbols of the larger |exposure| after all buys fill, or after all sells fill.

    `positions` holds signed sizes; `marks` the price each is valued at.
    """
    total = Decimal(0)
    for symbol in set(positions) | set(orders):
        held = positions.get(symbol, Decimal(0)) * marks.get(symbol, Decimal(0))
        resting = orders.get(symbol, [])
        up = held + resting_side_notional(resting, "buy")
        down = held - resting_side_notional(resting, "sell")
        total += max(abs(up), abs(down))
    return total
