"""Golden signing vectors, computed independently of `reconciler.levret.signing`.

Each expected signature is hard-coded hex that was computed once with nothing but `hmac` and
`hashlib`, and is re-derived inline here with a separate two-line HMAC, so a bug in the
client's signing cannot agree with itself. The requests go through the real client and a
mock transport, so what is checked is what would be on the wire: target, body bytes, headers.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

import httpx
import pytest

from reconciler.levret.client import LevretClient
from reconciler.levret.settings import ClientSettings

TS = 1736700000000


def independent_hmac(secret: str, method: str, target: str, ts: int, body: bytes) -> str:
    message = method.encode() + target.encode() + str(ts).encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


async def capture(
    secret: str, ts_ms: int, call: Any, *, user_id: str = "u1", data: Any = None
) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "data": [] if data is None else data})

    settings = ClientSettings(api_key_id="key-1", api_key_secret=secret, user_id=user_id)
    async with LevretClient(
        settings, transport=httpx.MockTransport(handler), wall=lambda: ts_ms / 1000
    ) as client:
        await call(client)
    assert len(seen) == 1
    return seen[0]


def assert_signed(
    request: httpx.Request, secret: str, ts: int, target: str, body: bytes, expected: str
) -> None:
    assert request.url.raw_path == target.encode("ascii")
    assert request.content == body
    assert request.headers["X-API-KEY-TS"] == str(ts)
    assert request.headers["X-API-KEY-EXP"] == "60000"
    assert request.headers["X-API-KEY-ID"] == "key-1"
    assert request.headers["X-API-KEY-SIGN"] == expected
    assert independent_hmac(secret, request.method, target, ts, body) == expected


@pytest.mark.anyio
async def test_empty_body_get() -> None:
    request = await capture("demo-secret", TS, lambda c: c.positions())
    assert_signed(
        request,
        "demo-secret",
        TS,
        "/api/v1/positions",
        b"",
        "2fb162a7b0f9d056ce4f688d4c27d79e4398c56d3e0dfb2ab200f9f8605576cc",
    )
    assert "Content-Type" not in request.headers


@pytest.mark.anyio
async def test_unicode_body_and_key_order_preserved() -> None:
    body = {"b": 1, "a": "héllo € 日本", "size": Decimal("0.01")}
    placed = {"id": "1", "symbol": "X", "side": "buy", "orderType": "market", "size": 1}
    answer = {**placed, "status": "filled"}
    request = await capture(
        "demo-secret", TS, lambda c: c.send("POST", "/order", body), data=answer
    )
    wire = '{"b":1,"a":"héllo € 日本","size":0.01}'.encode()
    assert_signed(
        request,
        "demo-secret",
        TS,
        "/api/v1/order",
        wire,
        "28404a5d1e7d4171063eb6b97c815c56370ddd8be17f65c28c5ee2d4599554e4",
    )
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.anyio
async def test_query_with_plus_at_and_space_is_signed_as_sent() -> None:
    request = await capture(
        "demo-secret",
        TS,
        lambda c: c.open_orders("BTC_USDT"),
        user_id="a+b@c d",
        data={"items": [], "page": 1, "pageSize": 50, "total": 0},
    )
    assert_signed(
        request,
        "demo-secret",
        TS,
        "/api/v1/order/open?userId=a%2Bb%40c%20d&symbol=BTC_USDT&page=1&pageSize=50",
        b"",
        "8d80b843790ee8c2fa6ca0859698b17fda40b405f2aaba824036a39e02cc05e2",
    )


@pytest.mark.anyio
async def test_unicode_secret_and_typed_cancel_body() -> None:
    request = await capture(
        "s3cr3t-ü",
        TS + 1,
        lambda c: c.send("POST", "/order/cancel", {"orderId": "123456"}),
        data={
            "id": "123456",
            "symbol": "X",
            "side": "buy",
            "orderType": "limit",
            "size": 1,
            "status": "cancelled",
        },
    )
    assert_signed(
        request,
        "s3cr3t-ü",
        TS + 1,
        "/api/v1/order/cancel",
        b'{"orderId":"123456"}',
        "568eff016f34af81e4ccf8e37819774d4c5b793138ddc7cfe6b0d388cee099d2",
    )


@pytest.mark.anyio
async def test_public_market_calls_are_not_signed() -> None:
    request = await capture("demo-secret", TS, lambda c: c.supported_symbols())
    assert request.url.raw_path == b"/api/v1/market/supported-symbols"
    assert not any(name.lower().startswith("x-api-key") for name in request.headers)


@pytest.mark.anyio
async def test_secret_header_can_be_turned_off() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "data": []})

    settings = ClientSettings(
        api_key_id="key-1", api_key_secret="x", user_id="u1", send_secret_header=False
    )
    async with LevretClient(settings, transport=httpx.MockTransport(handler)) as client:
        await client.positions()
    assert "X-API-KEY-SECRET" not in seen[0].headers
    assert "X-API-KEY-SIGN" in seen[0].headers
