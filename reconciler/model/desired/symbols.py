"""One managed symbol in the desired-state file: its position, its resting orders, its tolerance.

These are the entries under `symbols.<SYMBOL>`: what the account should hold on that symbol.
Rules that compare fields (one amount of size, notional or weight; take-profit above
stop-loss) are `reconciler.model.desired.checks`'s, since pydantic checks one field at a time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import StrictBool

from reconciler.model.desired.fields import FileModel, Leverage, NonNegative, Positive, Weight

__all__ = ["DesiredOrder", "DesiredPosition", "DesiredSymbol", "Tolerance"]


class Tolerance(FileModel):
    """One symbol's tolerance: a position difference in contracts (`size`) or in USDT at the
    mark (`notional`), and a margin difference in USDT; unset values fall back to defaults.

    Whatever it says, a different side and a difference of the symbol's minimum size or more are
    never within tolerance.
    """

    size: NonNegative | None = None
    notional: NonNegative | None = None
    margin: NonNegative | None = None


class DesiredPosition(FileModel):
    """The position wanted on one symbol. TP/SL left out: kept as is; `null`: cleared.

    Absent margin: any. Whether a TP/SL was given is `model_fields_set`, not its value.
    """

    side: Literal["long", "short", "flat"]
    size: Positive | None = None
    notional: Positive | None = None
    weight: Weight | None = None
    leverage: Leverage | None = None
    margin: Positive | None = None
    take_profit: Positive | None = None
    stop_loss: Positive | None = None


class DesiredOrder(FileModel):
    """One resting limit order wanted; `leverage` defaults to the symbol's leverage.

    `taker: true` allows an order that crosses the book (it fills at once instead of
    resting); without it such an order is refused.
    """

    side: Literal["buy", "sell"]
    price: Positive
    size: Positive
    leverage: Leverage | None = None
    reduce_only: StrictBool = False
    take_profit: Positive | None = None  # the order's own, for the position it opens
    stop_loss: Positive | None = None
    taker: StrictBool = False


class DesiredSymbol(FileModel):
    position: DesiredPosition | None = None
    orders: tuple[DesiredOrder, ...] | None = None
    orders_mode: Literal["authoritative", "additive"] = "authoritative"
    protect: StrictBool = False
    tolerance: Tolerance | None = None
