"""Per read endpoint: an answer missing a field the reconciler needs stops with one exact line.

Nothing but that one read is sent, and the line carries neither the secret nor any value of
the account; `-v` (the `reconciler.levret` log at INFO) shows the entity's masked shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from reconciler.levret.client import LevretClient
from reconciler.levret.fields import WireFormatError
from reconciler.levret.settings import ClientSettings

SECRET = "wire-secret-5b1e"
EQUITY = "987654.321"

Call = Callable[[LevretClient], Awaitable[Any]]


async def _drain(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


CASES: list[tuple[str, Call, Any, str]] = [
    (
        "supported-symbols",
        lambda c: c.supported_symbols(),
        [{"symbol": "BTC_USDT", "tick_size": "0.1", "stepSize": "0.001", "maxLeverage": 5}],
        "GET /market/supported-symbols: symbol spec #0 (id BTC_USDT): field minSize is missing "
        "(tried minSize, min_size, minQty, min_qty, minOrderSize, min_order_size as number or "
        "decimal string; present: symbol, tick_size, stepSize, maxLeverage) [BAD_PAYLOAD]",
    ),
    (
        "market-stats",
        lambda c: c.market_stats("BTC_USDT"),
        {"symbol": "BTC_USDT", "lastPrice": "1"},
        "GET /market/market-stats: market stats (id BTC_USDT): field markPrice is missing "
        "(tried markPrice, mark_price, mark as number or decimal string; present: symbol, "
        "lastPrice) [BAD_PAYLOAD]",
    ),
    (
        "orderbook",
        lambda c: c.orderbook("BTC_USDT", depth=1),
        {"bids": [["1"]], "asks": []},
        "GET /market/orderbook: bids level #0: field size is missing (tried size, qty, "
        "quantity as number or decimal string; present: price) [BAD_PAYLOAD]",
    ),
    (
        "open orders",
        lambda c: _drain(c.iter_open_orders()),
        {
            "items": [
                {
                    "orderId": "o7",
                    "symbol": "X",
                    "orderType": "limit",
                    "size": 1,
                    "status": "open",
                }
            ],
            "page": 1,
            "pageSize": 100,
            "total": 1,
        },
        "GET /order/open: order #0 (id o7): field side is missing (tried side as one of "
        "buy/sell; present: orderId, symbol, orderType, size, status) [BAD_PAYLOAD]",
    ),
    (
        "one order",
        lambda c: c.get_order("o7"),
        {"id": "o7", "symbol": "X", "side": "buy", "orderType": "limit", "status": "open"},
        "GET /order/:id: order (id o7): field size is missing (tried size, quantity, qty as "
        "number or decimal string; present: id, symbol, side, orderType, status) [BAD_PAYLOAD]",
    ),
    (
        "positions",
        lambda c: c.positions(),
        {
            "positions": [
                {
                    "id": "p1",
                    "symbol": "X",
                    "side": "long",
                    "size": "1",
                    "entryPrice": 1,
                    "markPrice": 1,
                    "leverage": 2,
                }
            ]
        },
        "GET /positions: position #0 (id p1): field margin is missing (tried margin, "
        "isolatedMargin, isolated_margin, positionMargin, position_margin as number or "
        "decimal string; present: id, symbol, side, size, entryPrice, markPrice, leverage) "
        "[BAD_PAYLOAD]",
    ),
    (
        "account overview",
        lambda c: c.account_overview(),
        {"walletBalance": EQUITY, "availableBalance": EQUITY},
        "GET /wallet/account-overview: account overview: field equity is missing (tried "
        "equity, totalEquity, total_equity, marginBalance, margin_balance as number or decimal "
        "string; present: walletBalance, availableBalance) [BAD_PAYLOAD]",
    ),
    (
        "user trades",
        lambda c: _drain(c.iter_user_trades()),
        {"rows": [{"tradeId": "t1", "symbol": "X", "side": "buy", "size": "1"}]},
        "GET /trade/user/:userId: trade #0 (id t1): field price is missing (tried price as "
        "number or decimal string; present: tradeId, symbol, side, size) [BAD_PAYLOAD]",
    ),
    (
        "order trades",
        lambda c: _drain(c.iter_order_trades("o1")),
        [{"id": "t1", "symbol": "X", "side": "buy", "size": "1", "price": "x"}],
        "GET /trade/order/:orderId: trade #0 (id t1): field price under price is <text>, "
        "unreadable (tried price as number or decimal string; present: id, symbol, side, size, "
        "price) [BAD_PAYLOAD]",
    ),
    (
        "candles",
        lambda c: c.candles("X"),
        [{"openTime": 1_700_000_000_000, "open": 1, "high": 1, "low": 1}],
        "GET /market/candles: candle #0: field close is missing",
    ),
    (
        "balance history",
        lambda c: c.balance_history(),
        [{"time": 1_700_000_000_000, "type": "deposit", "amount": EQUITY}],
        "GET /wallet/balance-history: balance entry #0: field balance is missing",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "call", "answer", "line"), CASES, ids=[c[0] for c in CASES])
async def test_missing_needed_field_is_one_exact_line(
    name: str, call: Call, answer: Any, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True, "data": answer})

    settings = ClientSettings(api_key_id="k1", api_key_secret=SECRET, user_id="acct-owner-1")
    caplog.set_level(logging.INFO, logger="reconciler")
    async with LevretClient(settings, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(WireFormatError) as caught:
            await call(client)
    text = str(caught.value)
    assert text.startswith(line)
    assert text.endswith("[BAD_PAYLOAD]")
    assert "\n" not in text
    for secret in (SECRET, EQUITY, "acct-owner-1"):
        assert secret not in text
        assert secret not in caplog.text
    assert [request.method for request in sent] == ["GET"]  # one read, nothing written
    assert "values masked" in caplog.text


@pytest.mark.anyio
async def test_a_write_whose_answer_cannot_be_read_is_unknown_not_resent() -> None:
    from reconciler.levret.errors import OutcomeUnknown

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True, "data": {"accepted": True}})

    settings = ClientSettings(api_key_id="k1", api_key_secret=SECRET, user_id="u1")
    async with LevretClient(settings, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(OutcomeUnknown, match="executed but order: field id is missing"):
            await client.send("POST", "/order", {"symbol": "X"})
    assert len(sent) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("position_id", ["7#", "7/x", "7?a=1", "{position_id}x", "7 8"])
async def test_an_intent_whose_id_would_change_the_endpoint_is_refused_unsent(
    position_id: str,
) -> None:
    """An id that is not one path segment (from the exchange, or an edited plan) never goes
    out: `POST /positions/7/x/close` is not the call anyone reviewed."""
    from reconciler.levret.errors import InvalidRequest
    from reconciler.model.intents import ClosePosition

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True, "data": None})

    settings = ClientSettings(api_key_id="k1", api_key_secret=SECRET, user_id="u1")
    async with LevretClient(settings, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InvalidRequest, match="is no path segment"):
            await client.execute(ClosePosition(symbol="BTC_USDT", position_id=position_id))
        closed = await client.execute(ClosePosition(symbol="BTC_USDT", position_id="pos-7.1"))
    assert closed is None  # the well-formed id was sent (and answered with nothing to read)
    assert [request.url.path for request in sent] == ["/api/v1/positions/pos-7.1/close"]
