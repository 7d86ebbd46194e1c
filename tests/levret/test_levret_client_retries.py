"""Edge cases of the client's retry classes, pacing and clock handling, on a mock transport.

Time is fake: `sleep` advances a fake wall clock and records the wait, so every wait is
checked without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from reconciler.apply.outcome import Outcome, classify
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import (
    AuthError,
    OrderNotOpen,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TransportError,
)
from reconciler.levret.settings import ClientSettings

NOW = 1_750_000_000.0

ORDER = {
    "id": "42",
    "userId": "u1",
    "symbol": "BTC_USDT",
    "side": "buy",
    "orderType": "limit",
    "size": 0.01,
    "price": 45000,
    "leverage": 10,
    "reduce_only": False,
    "status": "open",
    "filledSize": 0,
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

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Answers requests from a list of steps; records every request it saw."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


def ok(data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data}, headers=headers)


def err(
    status: int, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {"success": False, "error": {"code": code, "message": code.lower()}, **extra}
    return httpx.Response(status, json=body, headers=headers)


def make(script: Script, fake: FakeTime, **settings: Any) -> LevretClient:
    options: dict[str, Any] = {
        "api_key_id": "k1",
        "api_key_secret": "unit-secret",
        "user_id": "u1",
        **settings,
    }
    return LevretClient(
        ClientSettings(**options),
        transport=httpx.MockTransport(script),
        sleep=fake.sleep,
        wall=fake.wall,
    )


async def create(client: LevretClient) -> Any:
    return await client.create_order("BTC_USDT", "buy", "limit", "0.01", price="45000")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        err(500, "INTERNAL_ERROR"),
        httpx.Response(502, text="bad gateway"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
    ids=["500", "502-no-envelope", "read-timeout", "dropped", "read-error"],
)
async def test_unsafe_create_is_sent_once_then_outcome_unknown(failure: Step) -> None:
    fake = FakeTime()
    script = Script(failure, ok(ORDER))
    async with make(script, fake) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            await create(client)
    assert len(script.requests) == 1
    exc = caught.value
    assert (exc.method, exc.path) == ("POST", "/order")
    assert exc.body is not None and exc.body["symbol"] == "BTC_USDT"
    assert exc.sent_at_ms == int(NOW * 1000)
    assert classify(exc) is Outcome.UNKNOWN


@pytest.mark.anyio
async def test_unsafe_create_retried_after_429_honouring_retry_after() -> None:
    fake = FakeTime()
    script = Script(err(429, "RATE_LIMITED", {"Retry-After": "2"}), ok(ORDER))
    async with make(script, fake) as client:
        order = await create(client)
    assert order.id == "42"
    assert len(script.requests) == 2
    assert sum(fake.sleeps) >= 2.0
    first, second = script.requests
    assert first.content == second.content
    assert first.headers["X-API-KEY-TS"] != second.headers["X-API-KEY-TS"]
    assert first.headers["X-API-KEY-SIGN"] != second.headers["X-API-KEY-SIGN"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("connect timed out")],
    ids=["connect-error", "connect-timeout"],
)
async def test_unsafe_create_retried_when_connection_never_opened(failure: Exception) -> None:
    fake = FakeTime()
    script = Script(failure, ok(ORDER))
    async with make(script, fake) as client:
        assert (await create(client)).id == "42"
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_unsafe_connect_errors_exhausted_are_not_sent() -> None:
    fake = FakeTime()
    script = Script(*[httpx.ConnectError("refused")] * 4)
    async with make(script, fake) as client:
        with pytest.raises(TransportError) as caught:
            await create(client)
    assert len(script.requests) == 4
    assert classify(caught.value) is Outcome.NOT_SENT


@pytest.mark.anyio
async def test_unsafe_margin_is_unsafe_too() -> None:
    fake = FakeTime()
    script = Script(err(503, "INTERNAL_ERROR"))
    async with make(script, fake) as client:
        with pytest.raises(OutcomeUnknown):
            await client.adjust_margin("7", "add", 50)
    assert len(script.requests) == 1


@pytest.mark.anyio
async def test_settles_cancel_retry_answering_order_not_open_counts_as_done() -> None:
    fake = FakeTime()
    cancelled = {**ORDER, "status": "cancelled"}
    script = Script(err(500, "INTERNAL_ERROR"), err(409, "ORDER_NOT_OPEN"), ok(cancelled))
    async with make(script, fake) as client:
        order = await client.cancel_order("42")
    assert order.status == "cancelled"
    assert [(r.method, r.url.path) for r in script.requests] == [
        ("POST", "/api/v1/order/cancel"),
        ("POST", "/api/v1/order/cancel"),
        ("GET", "/api/v1/order/42"),
    ]


@pytest.mark.anyio
async def test_settles_close_retry_answering_not_found_counts_as_done() -> None:
    fake = FakeTime()
    script = Script(httpx.ReadTimeout("slow"), err(404, "NOT_FOUND"))
    async with make(script, fake) as client:
        assert await client.close_position("7") is None
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_settles_first_answer_order_not_open_is_a_rejection() -> None:
    fake = FakeTime()
    script = Script(err(409, "ORDER_NOT_OPEN"))
    async with make(script, fake) as client:
        with pytest.raises(OrderNotOpen) as caught:
            await client.cancel_order("42")
    assert caught.value.code == "ORDER_NOT_OPEN" and caught.value.status == 409
    assert classify(caught.value) is Outcome.REJECTED


@pytest.mark.anyio
async def test_safe_read_retries_with_numbered_attempts(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    script = Script(err(503, "INTERNAL_ERROR"), httpx.ReadTimeout("slow"), ok([POSITION]))
    caplog.set_level(logging.DEBUG, logger="reconciler.levret")
    async with make(script, fake) as client:
        positions = await client.positions()
    assert positions[0].id == "7"
    assert len(script.requests) == 3
    lines = [r.getMessage() for r in caplog.records if "/api/v1/positions" in r.getMessage()]
    assert any("#1/4" in line and "503" in line for line in lines)
    assert any("#2/4" in line and "ReadTimeout" in line for line in lines)
    assert any("#3/4" in line and "200" in line for line in lines)
    assert len(fake.sleeps) == 2


@pytest.mark.anyio
async def test_safe_read_gives_up_after_max_attempts() -> None:
    fake = FakeTime()
    script = Script(*[err(500, "INTERNAL_ERROR")] * 3)
    async with make(script, fake, max_attempts=3) as client:
        with pytest.raises(ServerError):
            await client.account_overview()
    assert len(script.requests) == 3


@pytest.mark.anyio
async def test_safe_mutation_exhausted_on_5xx_is_outcome_unknown() -> None:
    fake = FakeTime()
    script = Script(*[err(500, "INTERNAL_ERROR")] * 2)
    async with make(script, fake, max_attempts=2) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            await client.set_leverage("7", 20)
    assert caught.value.path == "/positions/7/leverage"
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_rate_limited_exhausted_is_a_rejection() -> None:
    fake = FakeTime()
    script = Script(*[err(429, "RATE_LIMITED", {"Retry-After": "1"})] * 2)
    async with make(script, fake, max_attempts=2) as client:
        with pytest.raises(RateLimited) as caught:
            await create(client)
    assert caught.value.retry_after == 1.0
    assert classify(caught.value) is Outcome.REJECTED


@pytest.mark.anyio
async def test_remaining_zero_waits_until_reset() -> None:
    fake = FakeTime()
    reset = int(NOW) + 3
    exhausted = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
    }
    script = Script(ok([], exhausted), ok([]))
    async with make(script, fake) as client:
        await client.positions()
        assert fake.sleeps == []
        await client.positions()
    assert fake.sleeps and abs(sum(fake.sleeps) - 3.0) < 0.01
    assert fake.now >= reset


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("skew_ms", "code"),
    [(90_000, "SIGNATURE_EXPIRED"), (-90_000, "TIMESTAMP_IN_FUTURE")],
)
async def test_skew_resyncs_and_resigns_once(skew_ms: int, code: str) -> None:
    fake = FakeTime()
    server_ms = int(NOW * 1000) + skew_ms
    stamp = datetime.fromtimestamp(server_ms / 1000, UTC).isoformat().replace("+00:00", "Z")

    def refuse(request: httpx.Request) -> httpx.Response:
        return err(401, code, timestamp=stamp)

    def check(request: httpx.Request) -> httpx.Response:
        ts = int(request.headers["X-API-KEY-TS"])
        assert abs(ts - server_ms) < 1000
        return ok(ORDER)

    script = Script(refuse, check)
    async with make(script, fake) as client:
        assert (await create(client)).id == "42"
        assert abs(client.clock.offset_ms - skew_ms) < 1000
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_skew_refused_twice_raises_auth_error() -> None:
    fake = FakeTime()
    script = Script(err(401, "SIGNATURE_EXPIRED"), err(401, "SIGNATURE_EXPIRED"))
    async with make(script, fake) as client:
        with pytest.raises(AuthError) as caught:
            await create(client)
    assert caught.value.code == "SIGNATURE_EXPIRED"
    assert len(script.requests) == 2
    assert classify(caught.value) is Outcome.REJECTED


@pytest.mark.anyio
async def test_skew_from_date_header_alone() -> None:
    fake = FakeTime()
    server = datetime.fromtimestamp(NOW + 90, UTC)
    date = {"Date": format_datetime(server, usegmt=True)}
    script = Script(ok([], date))
    async with make(script, fake) as client:
        await client.positions()
        assert abs(client.clock.offset_ms - 90_000) <= 1000


@pytest.mark.anyio
async def test_small_date_disagreement_is_ignored() -> None:
    fake = FakeTime()
    server = datetime.fromtimestamp(NOW + 0.4, UTC)
    script = Script(ok([], {"Date": format_datetime(server, usegmt=True)}))
    async with make(script, fake) as client:
        await client.positions()
        assert client.clock.offset_ms == 0


@pytest.mark.anyio
async def test_iter_open_orders_walks_every_page() -> None:
    fake = FakeTime()
    orders = [{**ORDER, "id": str(i)} for i in range(5)]

    def page(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page"])
        size = int(request.url.params["pageSize"])
        items = orders[(number - 1) * size : number * size]
        return ok({"items": items, "page": number, "pageSize": size, "total": len(orders)})

    script = Script(page, page, page)
    async with make(script, fake) as client:
        ids = [o.id async for o in client.iter_open_orders(page_size=2)]
    assert ids == ["0", "1", "2", "3", "4"]
    assert len(script.requests) == 3


@pytest.mark.anyio
async def test_send_refuses_placeholder_path() -> None:
    fake = FakeTime()
    script = Script()
    async with make(script, fake) as client:
        with pytest.raises(Exception) as caught:
            await client.send("POST", "/positions/{position_id}/tpsl", {"stopLossPrice": 1})
    assert classify(caught.value) is Outcome.NOT_SENT
    assert script.requests == []
