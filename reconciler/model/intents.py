"""Intents: what one call of a plan is to do, in the domain's words, independent of any venue.

The planner decides intents; a venue adapter (`reconciler.levret.requests`) turns each into
its exact call; apply and settlement reason about them by type. Every layer that handles
intents dispatches with `match` and ends in `assert_never`, so an intent added here and
forgotten there fails type-checking instead of falling through at run time.

A position this plan opens has no id while planning: its later intents carry
`position_id=None` (`NEW_POSITION`), which apply fills in from the account (`with_position`)
just before the call, and which a saved plan shows as the venue's placeholder.

Whether a call lowers risk is not an intent's property: it depends on the account
(cancelling a reduce-only order takes protection away), so the planner judges it, with the
account in view, as `Action.risk`.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, assert_never

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.account import CancelAllResult, Order, OrderSide, OrderType, Position

__all__ = [
    "NEW_POSITION",
    "AdjustMargin",
    "Answer",
    "CancelAllOrders",
    "CancelOrder",
    "ClosePosition",
    "Intent",
    "IntentKind",
    "PlaceOrder",
    "PositionIntent",
    "RetryClass",
    "SetLeverage",
    "SetTpSl",
    "retry_class",
    "with_position",
]

NEW_POSITION: None = None

IntentKind = Literal[
    "place_order",
    "cancel_order",
    "cancel_all_orders",
    "set_leverage",
    "adjust_margin",
    "set_tpsl",
    "close_position",
]


class RetryClass(StrEnum):
    """How a call may be resent after a failure that leaves its outcome open.

    The class follows from what the intent does, not from how a venue spells it: setting an
    absolute value twice is setting it once; a cancel or close that a retry finds already
    done has done its work; an order or a margin move sent twice is twice the risk.
    """

    SAFE = "safe"
    """Idempotent: resent on any transient failure."""
    SETTLES = "settles"
    """Resent; a retry that finds the work done (not found, not open) counts as done."""
    UNSAFE = "unsafe"
    """Resent only when the venue certainly did not execute it."""


class _Intent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str

    @property
    def is_market(self) -> bool:
        """A market order: its size was computed from the position it was planned against."""
        return False

    @property
    def on_new_position(self) -> bool:
        """Whether it names the position this plan opens, whose id apply must fill in."""
        return False


class PlaceOrder(_Intent):
    kind: Literal["place_order"] = "place_order"
    side: OrderSide
    order_type: OrderType
    size: Decimal
    price: Decimal | None = None  # limit orders only
    leverage: int | None = None
    reduce_only: bool = False
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None

    @property
    def is_market(self) -> bool:
        return self.order_type == "market"


class CancelOrder(_Intent):
    kind: Literal["cancel_order"] = "cancel_order"
    order_id: str


class CancelAllOrders(_Intent):
    kind: Literal["cancel_all_orders"] = "cancel_all_orders"


class _OnPosition(_Intent):
    # None: the position this plan opens (`NEW_POSITION`), known only once it is open.
    position_id: str | None

    @property
    def on_new_position(self) -> bool:
        return self.position_id is None


class SetLeverage(_OnPosition):
    kind: Literal["set_leverage"] = "set_leverage"
    leverage: int


class AdjustMargin(_OnPosition):
    kind: Literal["adjust_margin"] = "adjust_margin"
    mode: Literal["add", "reduce"]
    amount: Decimal

    @property
    def signed_amount(self) -> Decimal:
        """The change of the position's margin: positive when added."""
        return self.amount if self.mode == "add" else -self.amount


class SetTpSl(_OnPosition):
    """The position's take-profit and stop-loss prices; None clears one."""

    kind: Literal["set_tpsl"] = "set_tpsl"
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None


class ClosePosition(_OnPosition):
    kind: Literal["close_position"] = "close_position"


PositionIntent = SetLeverage | AdjustMargin | SetTpSl | ClosePosition

Intent = Annotated[
    PlaceOrder
    | CancelOrder
    | CancelAllOrders
    | SetLeverage
    | AdjustMargin
    | SetTpSl
    | ClosePosition,
    Field(discriminator="kind"),
]


# What a venue answers a carried-out intent with: the order placed, cancelled or closing the
# position; the orders cancelled; the position changed; None when a retry found it done.
Answer = Order | Position | CancelAllResult | None


def retry_class(intent: Intent) -> RetryClass:
    """How the call of `intent` may be resent (see `RetryClass`)."""
    match intent:
        case SetLeverage() | SetTpSl():
            return RetryClass.SAFE
        case CancelOrder() | CancelAllOrders() | ClosePosition():
            return RetryClass.SETTLES
        case PlaceOrder() | AdjustMargin():
            return RetryClass.UNSAFE
        case _:
            assert_never(intent)


def with_position(intent: Intent, position_id: str) -> Intent:
    """`intent` with the new position's id filled in (unchanged if it names one already)."""
    match intent:
        case SetLeverage() | AdjustMargin() | SetTpSl() | ClosePosition():
            if intent.position_id is None:
                return intent.model_copy(update={"position_id": position_id})
            return intent
        case PlaceOrder() | CancelOrder() | CancelAllOrders():
            return intent
        case _:
            assert_never(intent)
