"""The accounting identities hold to the last digit after any sequence of operations."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.sandbox.engine import Exchange, Rejection, TradingConfig
from reconciler.sandbox.seed import DEMO_SYMBOLS

D = Decimal
EIGHT_PLACES = D("1E-8")
USERS = ("u1", "u2")
SYMBOLS = {"BTC_USDT": (D(45000), D("0.001"), D("0.1")), "SOL_USDT": (D(100), D("0.1"), D("0.01"))}


def all_pages(fetch: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        data = fetch(page)
        items += data["items"]
        if page * data["pageSize"] >= data["total"]:
            return items
        page += 1


def assert_books_balance(exchange: Exchange, user: str) -> None:
    overview = exchange.account_overview(user)
    wallet = overview["walletBalance"]
    assert wallet == overview["deposits"] - overview["totalFees"] + overview["realizedPnl"]
    assert overview["availableBalance"] == (
        wallet - overview["positionMargin"] - overview["orderMargin"]
    )
    assert overview["equity"] == wallet + overview["unrealizedPnl"]
    positions = exchange.positions(user, None)
    assert overview["positionMargin"] == sum((p["margin"] for p in positions), D(0))
    assert overview["unrealizedPnl"] == sum((p["unrealizedPnl"] for p in positions), D(0))
    for position in positions:
        assert position["size"] > 0 and position["margin"] > 0
    resting = all_pages(lambda page: exchange.open_orders(user, None, page, 100, None, None))
    reserved = sum(
        (
            (o["price"] * (o["size"] - o["filledSize"]) / o["leverage"]).quantize(EIGHT_PLACES)
            for o in resting
            if not o["reduce_only"]
        ),
        D(0),
    )
    assert overview["orderMargin"] == reserved
    fills = all_pages(lambda page: exchange.user_trades(user, None, page, 100, None, None))
    assert overview["totalFees"] == sum((f["fee"] for f in fills), D(0))
    ledger = exchange.balance_history(user, 365)
    liquidations = sum((e["amount"] for e in ledger if e["type"] == "liquidation"), D(0))
    assert overview["realizedPnl"] == sum((f["realizedPnl"] for f in fills), D(0)) + liquidations
    assert sum((e["amount"] for e in ledger), D(0)) == wallet
    assert ledger[-1]["balance"] == wallet
    for amount in (wallet, overview["positionMargin"], overview["orderMargin"]):
        assert amount == amount.quantize(EIGHT_PLACES)


def fresh_exchange() -> Exchange:
    config = TradingConfig(slippage_bps=D(3))
    exchange = Exchange.with_symbols(DEMO_SYMBOLS, clock=lambda: 1_700_000_000_000, config=config)
    for user in USERS:
        exchange.create_account(user, f"{user}-key", "secret", ["read", "trade"], D(20_000))
    return exchange


def apply(exchange: Exchange, operation: tuple[Any, ...]) -> None:
    """Run one operation; refusals are part of the game and must change nothing."""
    kind, user, symbol, a, b, c = operation
    mark, step, tick = SYMBOLS[symbol]
    positions = exchange.positions(user, symbol)
    try:
        if kind == "order":
            side = "buy" if a % 2 else "sell"
            body: dict[str, Any] = {
                "symbol": symbol,
                "side": side,
                "orderType": "limit" if b % 3 == 0 else "market",
                "size": step * (1 + c % 700),
                "leverage": 1 + a % 50,
                "reduce_only": b % 5 == 4,
            }
            if body["orderType"] == "limit":
                current = exchange.market_stats(symbol)["markPrice"]  # type: ignore[index]
                body["price"] = (current * (1 + D(c % 41 - 20) / 400)).quantize(tick)
            exchange.place_order(user, body)
        elif kind == "prices":
            move = D(a % 61 - 30) / 1000
            exchange.set_prices({symbol: (mark * (1 + move)).quantize(tick)})
        elif kind == "cancel":
            exchange.cancel_all(user, {"symbol": symbol})
        elif kind == "leverage" and positions:
            exchange.set_leverage(user, positions[0]["id"], {"leverage": 1 + a % 60})
        elif kind == "margin" and positions:
            mode = "add" if b % 2 else "reduce"
            amount = D(1 + a % 500)
            exchange.adjust_margin(user, positions[0]["id"], {"mode": mode, "amount": amount})
        elif kind == "tpsl" and positions:
            long = positions[0]["side"] == "long"
            offset = mark * D(1 + a % 10) / 100
            take_profit = (mark + offset if long else mark - offset).quantize(tick)
            stop_loss = (mark - offset if long else mark + offset).quantize(tick)
            exchange.set_tpsl(
                user,
                positions[0]["id"],
                {"takeProfitPrice": take_profit, "stopLossPrice": stop_loss},
            )
        elif kind == "close" and positions:
            exchange.close_position(user, positions[0]["id"])
        elif kind == "partial":
            exchange.config.partial_fill_ratio = None if a % 2 else D("0.5")
    except Rejection as refused:
        assert refused.code in {"VALIDATION_ERROR", "INSUFFICIENT_MARGIN"}, refused


KINDS = ("order", "order", "order", "prices", "cancel", "leverage", "margin", "tpsl", "close",
         "partial")  # fmt: skip

operations = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(USERS),
    st.sampled_from(sorted(SYMBOLS)),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)


@given(st.lists(operations, max_size=30))
def test_books_balance_after_any_operations(sequence: list[tuple[Any, ...]]) -> None:
    exchange = fresh_exchange()
    for operation in sequence:
        apply(exchange, operation)
    for user in USERS:
        assert_books_balance(exchange, user)


def test_books_balance_through_a_long_random_session() -> None:
    chooser = random.Random(20240101)
    exchange = fresh_exchange()
    for index in range(600):
        operation = (
            chooser.choice(KINDS),
            chooser.choice(USERS),
            chooser.choice(sorted(SYMBOLS)),
            chooser.randrange(10_000),
            chooser.randrange(10_000),
            chooser.randrange(10_000),
        )
        apply(exchange, operation)
        if index % 50 == 0:
            for user in USERS:
                assert_books_balance(exchange, user)
    for user in USERS:
        assert_books_balance(exchange, user)
    kinds = {entry["type"] for user in USERS for entry in exchange.balance_history(user, 365)}
    assert {"deposit", "fee", "realized_pnl", "liquidation"} <= kinds


def test_a_refused_operation_changes_nothing() -> None:
    exchange = fresh_exchange()
    apply(exchange, ("order", "u1", "BTC_USDT", 1, 1, 100))
    before = (exchange.account_overview("u1"), exchange.positions("u1", None))
    body = {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": D(100)}
    with pytest.raises(Rejection, match="available"):
        exchange.place_order("u1", body)
    assert (exchange.account_overview("u1"), exchange.positions("u1", None)) == before
