"""Intent -> exact Levret call: each kind's path and body, and its retry class either way.

The client takes an intent's retry class from the intent; a raw call (`send`) reads it from
the method and path. The two must agree for every intent, or a call could be retried by one
reading where the other forbids it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconciler.levret.requests import POSITION_ID_PLACEHOLDER, request_for
from reconciler.levret.transport import retry_class as path_retry_class
from reconciler.model.intents import (
    AdjustMargin,
    CancelAllOrders,
    CancelOrder,
    ClosePosition,
    Intent,
    PlaceOrder,
    RetryClass,
    SetLeverage,
    SetTpSl,
    retry_class,
    with_position,
)
from reconciler.model.plan import Request

CASES: list[tuple[Intent, Request, RetryClass]] = [
    (
        PlaceOrder(symbol="BTC_USDT", side="buy", order_type="market", size=Decimal("0.2"),
                   leverage=10, take_profit=Decimal(50000), stop_loss=Decimal(42000)),
        Request(method="POST", path="/order", body={
            "userId": "u1", "symbol": "BTC_USDT", "side": "buy", "orderType": "market",
            "size": Decimal("0.2"), "leverage": 10, "reduce_only": False,
            "takeProfit": Decimal(50000), "stopLoss": Decimal(42000)}),
        RetryClass.UNSAFE,
    ),
    (
        PlaceOrder(symbol="SOL_USDT", side="sell", order_type="limit", size=Decimal(3),
                   price=Decimal("101.5"), leverage=5, reduce_only=True),
        Request(method="POST", path="/order", body={
            "userId": "u1", "symbol": "SOL_USDT", "side": "sell", "orderType": "limit",
            "size": Decimal(3), "price": Decimal("101.5"), "leverage": 5, "reduce_only": True}),
        RetryClass.UNSAFE,
    ),
    (
        CancelOrder(symbol="SOL_USDT", order_id="o-9"),
        Request(method="POST", path="/order/cancel", body={"orderId": "o-9"}),
        RetryClass.SETTLES,
    ),
    (
        CancelAllOrders(symbol="SOL_USDT"),
        Request(method="POST", path="/order/cancelAll",
                body={"userId": "u1", "symbol": "SOL_USDT"}),
        RetryClass.SETTLES,
    ),
    (
        SetLeverage(symbol="BTC_USDT", position_id="7", leverage=20),
        Request(method="POST", path="/positions/7/leverage", body={"leverage": 20}),
        RetryClass.SAFE,
    ),
    (
        AdjustMargin(symbol="BTC_USDT", position_id="7", mode="reduce", amount=Decimal("12.5")),
        Request(method="POST", path="/positions/7/margin",
                body={"mode": "reduce", "amount": Decimal("12.5")}),
        RetryClass.UNSAFE,
    ),
    (
        SetTpSl(symbol="BTC_USDT", position_id="7", stop_loss=Decimal(41000)),
        Request(method="POST", path="/positions/7/tpsl",
                body={"takeProfitPrice": None, "stopLossPrice": Decimal(41000)}),
        RetryClass.SAFE,
    ),
    (
        ClosePosition(symbol="BTC_USDT", position_id="7"),
        Request(method="POST", path="/positions/7/close"),
        RetryClass.SETTLES,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("intent", "call", "kind"), CASES, ids=lambda v: getattr(v, "kind", ""))
def test_each_intent_makes_its_documented_call_and_retries_alike_either_way(
    intent: Intent, call: Request, kind: RetryClass
) -> None:
    assert request_for(intent, user_id="u1") == call
    assert retry_class(intent) is kind
    assert path_retry_class(call.method, call.path) is kind


def test_the_position_this_plan_opens_shows_the_placeholder_until_apply_fills_it_in() -> None:
    planned = AdjustMargin(symbol="BTC_USDT", position_id=None, mode="add", amount=Decimal(5))
    assert planned.on_new_position
    shown = request_for(planned, user_id="u1")
    assert shown.path == f"/positions/{POSITION_ID_PLACEHOLDER}/margin"
    sent = with_position(planned, "p-42")
    assert not sent.on_new_position
    assert request_for(sent, user_id="u1").path == "/positions/p-42/margin"
    assert with_position(sent, "other") == sent  # an id it already names is kept
    assert path_retry_class("POST", request_for(sent, user_id="u1").path) is RetryClass.UNSAFE
