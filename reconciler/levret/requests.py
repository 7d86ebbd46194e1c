"""Intent -> the exact Levret call: method, path below the API prefix, body with the API's names.

The one place that spells a mutation the way the documentation does (`POST /order`,
`orderType`, `takeProfitPrice`, ...). A saved plan shows these calls; apply sends them; the
journal records them. An intent on the position this plan opens shows the placeholder
`{position_id}` in its path until apply knows the id (`reconciler.model.intents.with_position`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, assert_never

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
from reconciler.model.plan import CallOf, Request

__all__ = ["POSITION_ID_PLACEHOLDER", "calls_for", "request_for"]

# The path segment of a position this plan opens, as a saved plan shows it.
POSITION_ID_PLACEHOLDER = "{position_id}"


def request_for(intent: Intent, *, user_id: str) -> Request:
    """The call that carries out `intent` for `user_id`, exactly as it will be signed and sent."""
    match intent:
        case PlaceOrder():
            body: dict[str, Any] = {
                "userId": user_id,
                "symbol": intent.symbol,
                "side": intent.side,
                "orderType": intent.order_type,
                "size": intent.size,
            }
            if intent.price is not None:
                body["price"] = intent.price
            if intent.leverage is not None:
                body["leverage"] = intent.leverage
            body["reduce_only"] = intent.reduce_only
            if intent.take_profit is not None:
                body["takeProfit"] = intent.take_profit
            if intent.stop_loss is not None:
                body["stopLoss"] = intent.stop_loss
            return Request(method="POST", path="/order", body=body)
        case CancelOrder():
            return Request(method="POST", path="/order/cancel", body={"orderId": intent.order_id})
        case CancelAllOrders():
            body = {"userId": user_id, "symbol": intent.symbol}
            return Request(method="POST", path="/order/cancelAll", body=body)
        case SetLeverage():
            path = _position_path(intent.position_id, "leverage")
            return Request(method="POST", path=path, body={"leverage": intent.leverage})
        case AdjustMargin():
            body = {"mode": intent.mode, "amount": intent.amount}
            return Request(
                method="POST", path=_position_path(intent.position_id, "margin"), body=body
            )
        case SetTpSl():
            body = {"takeProfitPrice": intent.take_profit, "stopLossPrice": intent.stop_loss}
            return Request(
                method="POST", path=_position_path(intent.position_id, "tpsl"), body=body
            )
        case ClosePosition():
            return Request(method="POST", path=_position_path(intent.position_id, "close"))
        case _:
            assert_never(intent)


def _position_path(position_id: str | None, action: str) -> str:
    return f"/positions/{POSITION_ID_PLACEHOLDER if position_id is None else position_id}/{action}"


def calls_for(user_id: str) -> CallOf:
    """`request_for` bound to `user_id`: how a plan for that user shows its calls."""
    return partial(request_for, user_id=user_id)
