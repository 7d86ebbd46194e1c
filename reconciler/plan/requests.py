"""Rule 6: every action in full, with the API's own field names and a reviewer's view."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.model.account import Order
from reconciler.model.plan import (
    Action,
    ActionKind,
    Phase,
    Request,
    Risk,
)
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
    side: str,
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
    """A market order with the API's own field names; market orders carry no price."""
    body: dict[str, Any] = {
        "userId": context.user_id,
        "symbol": symbol,
        "side": side,
        "orderType": "market",
        "size": size,
        "leverage": leverage,
        "reduce_only": reduce_only,
    }
    if take_profit is not None:
        body["takeProfit"] = take_profit
    if stop_loss is not None:
        body["stopLoss"] = stop_loss
    return make_action(
        "place_order",
        symbol,
        phase,
        Request(method="POST", path="/order", body=body),
        before=before,
        after=after,
        notional=notional,
        risk=risk,
        reason=reason,
    )


def make_action(
    kind: ActionKind,
    symbol: str,
    phase: Phase,
    request: Request,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
    notional: Decimal = Decimal(0),
    risk: Risk = "neutral",
    on_failure: tuple[Request, ...] = (),
) -> Action:
    return Action(
        kind=kind,
        symbol=symbol,
        phase=phase,
        request=request,
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
        "orderType": order.orderType,
        "price": order.price,
        "size": order.remaining,
        "reduce_only": order.reduce_only,
    }


def price_text(price: Decimal | None) -> str:
    return "market" if price is None else f"{price:f}"
