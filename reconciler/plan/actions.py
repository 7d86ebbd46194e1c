"""Rule 6: every action in full: its intent, and the views a reviewer judges it by."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.model.account import Order, OrderSide
from reconciler.model.intents import Intent, PlaceOrder
from reconciler.model.plan import Action, Phase, Risk
from reconciler.plan.model import (
    Context,
    Holding,
    money,
)

# -- rule 6: every action in full -----------------------------------------------------------


def market_order(
    context: Context,
    symbol: str,
    *,
    side: OrderSide,
    size: Decimal,
    leverage: int,
    reduce_only: bool,
    take_profit: Decimal | None,
    stop_loss: Decimal | None,
    phase: Phase,
    risk: Risk,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    notional: Decimal,
) -> Action:
    """A market order; market orders carry no price."""
    intent = PlaceOrder(
        symbol=symbol,
        side=side,
        order_type="market",
        size=size,
        leverage=leverage,
        reduce_only=reduce_only,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    return make_action(
        intent,
        phase,
        before=before,
        after=after,
        notional=notional,
        risk=risk,
        reason=reason,
    )


def make_action(
    intent: Intent,
    phase: Phase,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
    notional: Decimal = Decimal(0),
    risk: Risk = "neutral",
    on_failure: tuple[Intent, ...] = (),
) -> Action:
    return Action(
        intent=intent,
        phase=phase,
        before=before,
        after=after,
        notional=money(notional),
        risk=risk,
        reason=reason,
        on_failure=on_failure,
    )


def position_view(holding: Holding | None) -> dict[str, Any]:
    if holding is None:
        return {"side": "flat", "size": Decimal(0)}
    return {"side": holding.side, "size": holding.size}


def order_view(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "side": order.side,
        "order_type": order.order_type,
        "price": order.price,
        "size": order.remaining,
        "reduce_only": order.reduce_only,
    }


def price_text(price: Decimal | None) -> str:
    return "market" if price is None else f"{price:f}"
