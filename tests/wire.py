"""The exact call the Levret adapter makes of an action's intent, for tests that pin calls."""

from __future__ import annotations

from decimal import Decimal

from reconciler.levret.requests import POSITION_ID_PLACEHOLDER, request_for
from reconciler.model.intents import (
    AdjustMargin,
    CancelAllOrders,
    CancelOrder,
    ClosePosition,
    Intent,
    PlaceOrder,
    SetLeverage,
    SetTpSl,
)
from reconciler.model.plan import Action, Request


def wire_call(action: Action, user_id: str = "demo") -> Request:
    """`action`'s call as it would be signed and sent for `user_id`."""
    return request_for(action.intent, user_id=user_id)


def intent_of(request: Request, symbol: str | None = None) -> Intent:
    """The intent whose Levret call is `request` (tests write actions as the wire shows them).

    `symbol` names the symbol of a call whose body does not (a cancel, a position call).
    """
    body = dict(request.body or {})
    parts = [part for part in request.path.split("/") if part]
    if parts[:1] == ["positions"]:
        position_id = None if parts[1] == POSITION_ID_PLACEHOLDER else parts[1]
        at = {"symbol": symbol or str(body.get("symbol", "?")), "position_id": position_id}
        verb = parts[2]
        if verb == "leverage":
            return SetLeverage(**at, leverage=int(body.get("leverage", 1)))
        if verb == "margin":
            return AdjustMargin(
                **at, mode=body.get("mode", "add"), amount=Decimal(body.get("amount", 0))
            )
        if verb == "tpsl":
            return SetTpSl(
                **at,
                take_profit=body.get("takeProfitPrice"),
                stop_loss=body.get("stopLossPrice"),
            )
        return ClosePosition(**at)
    if parts == ["order", "cancel"]:
        return CancelOrder(symbol=symbol or "?", order_id=str(body["orderId"]))
    if parts == ["order", "cancelAll"]:
        return CancelAllOrders(symbol=symbol or str(body["symbol"]))
    return PlaceOrder(  # a test that leaves the order's terms out means any market buy
        symbol=symbol or str(body["symbol"]),
        side=body.get("side", "buy"),
        order_type=body.get("orderType", "market"),
        size=Decimal(body.get("size", 1)),
        price=body.get("price"),
        leverage=body.get("leverage"),
        reduce_only=bool(body.get("reduce_only", False)),
        take_profit=body.get("takeProfit"),
        stop_loss=body.get("stopLoss"),
    )
