"""Money arithmetic shared by every fill, so sums of fees, PnL and margins stay exact.

Every amount that is stored or added up is quantized to 8 decimal places here and nowhere
else; the accounting identities of `docs/levret-api.md` then hold to the last digit because
the overview adds up exactly the values that were stored.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

__all__ = [
    "ZERO",
    "average_price",
    "ceil_to_grid",
    "fee",
    "floor_to_grid",
    "initial_margin",
    "is_on_grid",
    "liquidation_price",
    "money",
    "position_side",
    "realized_pnl",
]

ZERO = Decimal(0)
_EIGHT_PLACES = Decimal("1E-8")

PositionSide = Literal["long", "short"]


def money(amount: Decimal) -> Decimal:
    return amount.quantize(_EIGHT_PLACES, rounding=ROUND_HALF_EVEN)


def position_side(order_side: str) -> PositionSide:
    """The side of the position a buy or sell order builds."""
    return "long" if order_side == "buy" else "short"


def _sign(side: str) -> int:
    return 1 if side == "long" else -1


def fee(price: Decimal, size: Decimal, rate: Decimal) -> Decimal:
    return money(price * size * rate)


def initial_margin(price: Decimal, size: Decimal, leverage: int) -> Decimal:
    return money(price * size / leverage)


def realized_pnl(side: str, entry: Decimal, exit_price: Decimal, size: Decimal) -> Decimal:
    return money((exit_price - entry) * size * _sign(side))


def average_price(
    old_price: Decimal, old_size: Decimal, new_price: Decimal, new_size: Decimal
) -> Decimal:
    return money((old_price * old_size + new_price * new_size) / (old_size + new_size))


def liquidation_price(
    side: str, entry: Decimal, size: Decimal, margin: Decimal, maintenance_rate: Decimal
) -> Decimal | None:
    """Mark at which the margin left equals the maintenance requirement; None if never."""
    if size <= 0:
        return None
    cushion = (margin - maintenance_rate * entry * size) / size
    price = money(entry - cushion if side == "long" else entry + cushion)
    return price if price > 0 else None


def is_on_grid(value: Decimal, grid: Decimal) -> bool:
    return value % grid == 0


def floor_to_grid(value: Decimal, grid: Decimal) -> Decimal:
    return (value / grid).to_integral_value(rounding=ROUND_FLOOR) * grid


def ceil_to_grid(value: Decimal, grid: Decimal) -> Decimal:
    return (value / grid).to_integral_value(rounding=ROUND_CEILING) * grid
