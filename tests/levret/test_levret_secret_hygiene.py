"""The secret appears in no log record, exception text or repr, on every endpoint and error path.

Driven on a mock exchange so every error path (each code, 5xx, timeouts, dropped responses,
non-envelope answers, an exchange message that echoes the secret) is reached deterministically;
the end-to-end test file repeats the sweep against the sandbox.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import httpx
import pytest

from reconciler.levret.client import LevretClient
from reconciler.levret.errors import LevretError
from reconciler.levret.settings import ClientSettings

SECRET = "Q7-distinctive-secret-9f3a"

ORDER = {
    "id": "42",
    "userId": "u1",
    "symbol": "BTC_USDT",
    "side": "buy",
    "orderType": "limit",
    "size": 0.01,
    "price": 45000,
    "status": "open",
    "createdAt": 1,
    "updatedAt": 1,
}
POSITION = {
    "id": "7",
    "userId": "u1",
    "symbol": "BTC_USDT",
    "side": "long",
    "size": 0.01,
    "entryPrice": 45000,
    "markPrice": 45000,
    "leverage": 10,
    "margin": 45,
}
STATS = {
    "symbol": "BTC_USDT",
    "lastPrice": 1,
    "markPrice": 1,
    "high24h": 1,
    "low24h": 1,
    "volume24h": 1,
    "change24h": 0,
    "fundingRate": 0,
}
OVERVIEW = {
    "userId": "u1",
    "deposits": 1,
    "walletBalance": 1,
    "availableBalance": 1,
    "positionMargin": 0,
    "orderMargin": 0,
    "unrealizedPnl": 0,
    "realizedPnl": 0,
    "totalFees": 0,
    "equity": 1,
}
PAGE: dict[str, Any] = {"items": [], "page": 1, "pageSize": 50, "total": 0}
SPEC = {
    "symbol": "BTC_USDT",
    "tickSize": 0.1,
    "stepSize": 0.001,
    "minSize": 0.001,
    "maxLeverage": 125,
}


def happy(request: httpx.Request) -> httpx.Response:
    path = request.url.path.removeprefix("/api/v1")
    table: dict[str, Any] = {
        "/market/supported-symbols": [SPEC],
        "/market/market-stats": STATS if "symbol" in request.url.params else [STATS],
        "/market/orderbook": {"symbol": "BTC_USDT", "bids": [], "asks": [], "timestamp": 1},
        "/market/candles": [],
        "/order": ORDER,
        "/order/open": PAGE,
        "/order/42": ORDER,
        "/order/cancel": ORDER,
        "/order/cancelAll": {"cancelled": [], "count": 0},
        "/positions": [POSITION],
        "/wallet/account-overview": OVERVIEW,
        "/wallet/balance-history": [],
    }
    if path in table:
        data = table[path]
    elif path.startswith("/positions/7/close"):
        data = {**ORDER, "status": "filled"}
    elif path.startswith("/positions/7/"):
        data = POSITION
    else:
        data = PAGE
    return httpx.Response(200, json={"success": True, "data": data})


def failing(mode: str) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if mode == "timeout":
            raise httpx.ReadTimeout("timed out")
        if mode == "connect":
            raise httpx.ConnectError("refused")
        if mode == "dropped":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if mode == "garbage":
            return httpx.Response(502, text=f"<html>{SECRET}</html>")
        status, code = mode.split(":")
        body = {"success": False, "error": {"code": code, "message": f"echo {SECRET}"}}
        return httpx.Response(int(status), json=body, headers={"Retry-After": "0"})

    return handler


async def every_endpoint(client: LevretClient) -> list[BaseException]:
    calls: list[Any] = [
        client.supported_symbols(),
        client.market_stats("BTC_USDT"),
        client.all_market_stats(),
        client.orderbook("BTC_USDT", 10),
        client.candles("BTC_USDT", "5m", 10),
        client.create_order("BTC_USDT", "buy", "limit", "0.01", price=45000),
        client.open_orders("BTC_USDT"),
        client.get_order("42"),
        client.cancel_order("42"),
        client.cancel_all("BTC_USDT"),
        client.positions(),
        client.set_leverage("7", 20),
        client.adjust_margin("7", "add", 5),
        client.set_tpsl("7", 47000, None),
        client.close_position("7"),
        client.account_overview(),
        client.balance_history(3),
        client.user_trades("BTC_USDT"),
        client.order_trades("42"),
        client.send("POST", "/order/cancelAll", {"userId": "u1"}),
    ]
    errors: list[BaseException] = []
    for call in calls:
        try:
            await call
        except LevretError as exc:
            errors.append(exc)
    for walk in (
        client.iter_open_orders(),
        client.iter_user_trades(),
        client.iter_order_trades("42"),
    ):
        try:
            _ = [item async for item in walk]
        except LevretError as exc:
            errors.append(exc)
    return errors


def texts_of(exc: BaseException) -> list[str]:
    out = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        out += [str(seen), repr(seen), repr(vars(seen)) if hasattr(seen, "__dict__") else ""]
        seen = seen.__cause__ or seen.__context__
    return out


@pytest.mark.anyio
@pytest.mark.parametrize(
    "mode",
    [
        "happy",
        "400:VALIDATION_ERROR",
        "400:INSUFFICIENT_MARGIN",
        "401:INVALID_SIGNATURE",
        "401:SIGNATURE_EXPIRED",
        "403:FORBIDDEN_SCOPE",
        "404:NOT_FOUND",
        "409:ORDER_NOT_OPEN",
        "429:RATE_LIMITED",
        "500:INTERNAL_ERROR",
        "timeout",
        "connect",
        "dropped",
        "garbage",
    ],
)
async def test_secret_never_leaks(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")  # whatever an earlier -v left
    settings = ClientSettings(
        api_key_id="k1", api_key_secret=SECRET, user_id="u1", max_attempts=2, backoff_initial=0
    )
    handler = happy if mode == "happy" else failing(mode)
    async with LevretClient(settings, transport=httpx.MockTransport(handler)) as client:
        errors = await every_endpoint(client)
        assert SECRET not in repr(client)
        assert SECRET not in repr(client.settings)
    if mode == "happy":
        assert errors == []
    else:
        assert len(errors) >= 20
    for exc in errors:
        for text in texts_of(exc):
            assert SECRET not in text
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in (record.exc_text or "")
