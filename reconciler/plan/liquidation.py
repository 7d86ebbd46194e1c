"""Where a predicted position would be liquidated, and how far that is from the mark.

The planner predicts margin after every call; what a trader judges is the liquidation price
that margin buys. Isolated margin is liquidated when what is left of it reaches the
maintenance requirement (`rate * entry * size`), so for a long the price is
`entry - (margin - rate * entry * size) / size`, and the mirror for a short. The exchange
does not publish its rate; the account shows it in every position's `liquidation_price`, so
the rate is read back from the live positions (the highest, to err safe), and taken as
`DEFAULT_MAINTENANCE_RATE` when the account has none to read it from.
"""

from __future__ import annotations

from decimal import Decimal

from reconciler.model.snapshot import Snapshot
from reconciler.plan.model import DEFAULT_MAINTENANCE_RATE, Holding

__all__ = [
    "DEFAULT_MAINTENANCE_RATE",
    "distance_percent",
    "liquidation_price",
    "maintenance_rate",
]

_RATE_DIGITS = Decimal("0.0001")
_PRICE_DIGITS = Decimal("0.00000001")


def maintenance_rate(snapshot: Snapshot) -> Decimal:
    """The maintenance rate the account's own liquidation prices imply (see module doc)."""
    rates: list[Decimal] = []
    for position in snapshot.positions.values():
        liquidation = position.liquidation_price
        if liquidation is None or position.size <= 0 or position.entry_price <= 0:
            continue
        cushion = position.margin / position.size
        if position.side == "long":
            rate = (cushion - position.entry_price + liquidation) / position.entry_price
        else:
            rate = (cushion - liquidation + position.entry_price) / position.entry_price
        if 0 <= rate < 1:
            rates.append(rate.quantize(_RATE_DIGITS))
    return max(rates, default=DEFAULT_MAINTENANCE_RATE)


def liquidation_price(holding: Holding, rate: Decimal) -> Decimal | None:
    """The mark at which `holding` is liquidated; None when no positive price would."""
    if holding.size <= 0:
        return None
    cushion = (holding.margin - rate * holding.entry * holding.size) / holding.size
    price = holding.entry - cushion if holding.side == "long" else holding.entry + cushion
    price = price.quantize(_PRICE_DIGITS)
    return price if price > 0 else None


def distance_percent(holding: Holding, mark: Decimal, rate: Decimal) -> Decimal | None:
    """Percent of `mark` the price must move against `holding` to liquidate it.

    None means never (a long whose liquidation price would be at or below zero). Zero or
    less means the mark is already past it.
    """
    price = liquidation_price(holding, rate)
    if price is None or mark <= 0:
        return None
    moved = mark - price if holding.side == "long" else price - mark
    return (moved / mark * 100).quantize(Decimal("0.01"))
