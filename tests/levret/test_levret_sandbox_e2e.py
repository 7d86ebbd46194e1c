"""The client against the real sandbox server: every endpoint, pacing, lost answers, clock skew,
the stream, the sync facade, and a secret that never leaks.

The sandbox's request log (`sandbox.requests()`) is the witness of what actually reached the
exchange: how many sends, which statuses, which codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from decimal import Decimal
from typing import Any

import pytest

from reconciler.apply.outcome import Outcome, classify
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import (
    AuthError,
    InsufficientMargin,
    LevretError,
    NotFound,
    OrderNotOpen,
    OutcomeUnknown,
    Rejected,
)
from reconciler.levret.settings import ClientSettings
from reconciler.levret.stream import LevretStream
from reconciler.levret.sync import SyncLevretClient
from reconciler.model.account import Order, Position


def demo_settings(sandbox: Any, **kw: Any) -> ClientSettings:
    values: dict[str, Any] = {
        "api_key_id": "demo-key",
        "api_key_secret": "demo-secret",
        "user_id": "demo",
        "base_url": sandbox.api_url,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    values.update(kw)
    return ClientSettings.model_validate(values)


def log_of(
    sandbox: Any, method: str | None = None, path: str | None = None
) -> list[dict[str, Any]]:
    return [
        r
        for r in sandbox.requests()
        if (method is None or r["method"] == method) and (path is None or r["path"] == path)
    ]


@pytest.mark.anyio
async def test_every_endpoint(sandbox: Any) -> None:
    async with LevretClient(demo_settings(sandbox)) as client:
        specs = await client.supported_symbols()
        assert "BTC_USDT" in {s.symbol for s in specs}
        assert (await client.market_stats("BTC_USDT")).symbol == "BTC_USDT"
        assert len(await client.all_market_stats()) == len(specs)
        book = await client.orderbook("BTC_USDT", depth=5)
        assert book.bids and book.asks and len(book.bids) <= 5
        assert isinstance(await client.candles("BTC_USDT", "1m", 10), list)

        overview = await client.account_overview()
        assert overview.user_id == "demo"
        assert await client.balance_history(7)
        positions = await client.positions()
        btc = next(p for p in positions if p.symbol == "BTC_USDT")
        assert [p.symbol for p in await client.positions("BTC_USDT")] == ["BTC_USDT"]

        resting = await client.create_order(
            "BTC_USDT", "buy", "limit", Decimal("0.001"), price=Decimal("30000.1")
        )
        assert resting.status == "open" and resting.price == Decimal("30000.1")
        assert (await client.get_order(resting.id)).id == resting.id
        page = await client.open_orders("BTC_USDT", page=1, page_size=1)
        assert page.page_size == 1 and page.total >= 2
        walked = [o.id async for o in client.iter_open_orders(page_size=1)]
        everything = await client.open_orders(page_size=100)
        assert resting.id in walked and len(walked) == len(set(walked)) == everything.total
        assert walked == [o.id for o in everything.items]

        filled = await client.create_order("SOL_USDT", "buy", "market", "1", leverage=5)
        assert filled.status == "filled"
        fills = await client.order_trades(filled.id)
        assert fills.total >= 1 and fills.items[0].order_id == filled.id
        assert [t.id async for t in client.iter_order_trades(filled.id)] == [
            t.id for t in fills.items
        ]
        mine = await client.user_trades("SOL_USDT")
        assert filled.id in {t.order_id for t in mine.items}
        assert len([t async for t in client.iter_user_trades(page_size=1)]) >= 3

        assert (await client.set_leverage(btc.id, 20)).leverage == 20
        added = await client.adjust_margin(btc.id, "add", 50)
        assert added.margin > 0
        tpsl = await client.set_tpsl(btc.id, Decimal("60000"), Decimal("30000"))
        assert (tpsl.take_profit_price, tpsl.stop_loss_price) == (Decimal(60000), Decimal(30000))
        kept = await client.set_tpsl(btc.id, stop_loss=None)
        assert (kept.take_profit_price, kept.stop_loss_price) == (Decimal(60000), None)

        cancelled = await client.cancel_order(resting.id)
        assert cancelled.status == "cancelled"
        result = await client.cancel_all("SOL_USDT")
        assert result.count == len(result.cancelled) >= 1
        closing = await client.close_position(btc.id)
        assert closing is not None and closing.status == "filled"
        data = await client.send("POST", "/order/cancelAll", {"userId": "demo"})
        assert data.count >= 0
    errors = [r for r in sandbox.requests() if r["status"] >= 400]
    assert errors == []


@pytest.mark.anyio
async def test_rejections_are_typed(sandbox: Any) -> None:
    async with LevretClient(demo_settings(sandbox)) as client:
        with pytest.raises(NotFound):
            await client.get_order("999999")
        order = await client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000")
        await client.cancel_order(order.id)
        with pytest.raises(OrderNotOpen) as not_open:
            await client.cancel_order(order.id)
        assert classify(not_open.value) is Outcome.REJECTED
        with pytest.raises(Rejected) as invalid:
            await client.create_order("BTC_USDT", "buy", "limit", "0.0001", price="30000")
        assert invalid.value.code == "VALIDATION_ERROR"
        with pytest.raises(InsufficientMargin):
            await client.create_order("BTC_USDT", "buy", "market", "1000", leverage=1)
    read_only = demo_settings(sandbox, api_key_id="demo-read", api_key_secret="demo-read-secret")
    async with LevretClient(read_only) as client:
        assert await client.positions()
        with pytest.raises(AuthError) as forbidden:
            await client.cancel_all()
        assert forbidden.value.code == "FORBIDDEN_SCOPE"


@pytest.mark.anyio
async def test_sixty_reads_under_a_tight_rate_limit(sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(rate_limit=20, rate_window=2)
    settings = demo_settings(sandbox, rate_limit_per_minute=600, rate_window_seconds=2)
    async with LevretClient(settings) as client:
        results = await asyncio.gather(*(client.account_overview() for _ in range(60)))
    assert len(results) == 60
    log = log_of(sandbox, "GET", "/api/v1/wallet/account-overview")
    assert len([r for r in log if r["status"] == 429]) == 0, [r["status"] for r in log]
    assert len([r for r in log if r["status"] == 200]) == 60


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_lost_answer_is_outcome_unknown_after_one_send(sandbox: Any, seed: int) -> None:
    async with LevretClient(demo_settings(sandbox)) as client:
        before = {o.id async for o in client.iter_open_orders("BTC_USDT")}
        sandbox.set_faults({"seed": seed, "drop_after_commit": 1.0})
        sandbox.clear_requests()
        with pytest.raises(OutcomeUnknown) as caught:
            await client.create_order("BTC_USDT", "buy", "limit", "0.001", price="31000")
        assert len(log_of(sandbox, "POST", "/api/v1/order")) == 1
        assert len(log_of(sandbox)) == 1
        exc = caught.value
        assert (exc.method, exc.path, exc.body["price"]) == ("POST", "/order", Decimal(31000))
        assert classify(exc) is Outcome.UNKNOWN
        sandbox.set_faults({})
        after = {o.id async for o in client.iter_open_orders("BTC_USDT")}
    assert len(after - before) == 1  # it did execute: only looking tells


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("skew", "code"), [(90_000, "SIGNATURE_EXPIRED"), (-90_000, "TIMESTAMP_IN_FUTURE")]
)
async def test_clock_skew_resyncs_once(sandbox: Any, skew: int, code: str) -> None:
    sandbox.set_faults({"clock_skew_ms": skew})
    sandbox.clear_requests()
    async with LevretClient(demo_settings(sandbox)) as client:
        assert (await client.account_overview()).user_id == "demo"
        order = await client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000")
        assert (await client.cancel_order(order.id)).status == "cancelled"
        assert abs(client.clock.offset_ms - skew) < 2000
    statuses = [(r["status"], r["code"]) for r in log_of(sandbox)]
    assert statuses[0] == (401, code)
    assert [s for s, _ in statuses[1:]] == [200] * (len(statuses) - 1)


@pytest.mark.anyio
async def test_stream_delivers_typed_events(sandbox: Any) -> None:
    settings = demo_settings(sandbox)
    seen: list[Order] = []
    async with LevretStream(settings) as stream, LevretClient(settings) as client:
        stream.on("orderUpdate", lambda payload: seen.append(payload))  # type: ignore[arg-type]
        order = await client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000")
        mine: Order | None = None
        async with asyncio.timeout(10):
            while mine is None:
                event = await stream.next_event()
                if isinstance(event.payload, Order) and event.payload.id == order.id:
                    assert event.name == "orderUpdate"
                    mine = event.payload
        assert mine.price == Decimal(30000) and mine.status == "open"
        positions = await client.positions("BTC_USDT")
        await client.set_leverage(positions[0].id, 12)
        async with asyncio.timeout(10):
            while True:
                event = await stream.next_event()
                if event.name == "positionUpdate":
                    assert isinstance(event.payload, Position)
                    assert event.payload.leverage == 12
                    break
    assert order.id in {o.id for o in seen}


@pytest.mark.anyio
async def test_stream_refuses_a_bad_key(sandbox: Any) -> None:
    settings = demo_settings(sandbox, api_key_secret="wrong-secret")
    with pytest.raises(AuthError):
        async with LevretStream(settings, connect_timeout=2):
            pass


def test_sync_facade(sandbox: Any) -> None:
    with SyncLevretClient(demo_settings(sandbox)) as client:
        assert client.account_overview().user_id == "demo"
        order = client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000")
        assert order.id in {o.id for o in client.all_open_orders()}
        assert client.cancel_order(order.id).status == "cancelled"


SECRET = "Zq-e2e-distinctive-SECRET-7781"


@pytest.mark.anyio
async def test_secret_never_leaks_end_to_end(
    sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")  # whatever an earlier -v left
    sandbox.create_account("hygiene", key_id="hygiene-key", secret=SECRET)
    settings = demo_settings(
        sandbox, api_key_id="hygiene-key", api_key_secret=SECRET, user_id="hygiene"
    )
    errors: list[BaseException] = []
    texts: list[str] = []

    async def attempt(call: Any) -> Any:
        try:
            return await call
        except LevretError as exc:
            errors.append(exc)
            return None

    async with LevretClient(settings) as client:
        texts.append(repr(client))
        await attempt(client.supported_symbols())
        await attempt(client.market_stats("BTC_USDT"))
        await attempt(client.all_market_stats())
        await attempt(client.orderbook("BTC_USDT"))
        await attempt(client.candles("BTC_USDT"))
        await attempt(client.account_overview())
        await attempt(client.balance_history(30))
        filled = await attempt(client.create_order("BTC_USDT", "buy", "market", "0.01"))
        resting = await attempt(
            client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000")
        )
        await attempt(client.get_order(resting.id))
        await attempt(client.open_orders())
        _ = [o async for o in client.iter_open_orders()]
        await attempt(client.user_trades())
        _ = [t async for t in client.iter_user_trades()]
        await attempt(client.order_trades(filled.id))
        _ = [t async for t in client.iter_order_trades(filled.id)]
        position = (await client.positions("BTC_USDT"))[0]
        await attempt(client.set_leverage(position.id, 15))
        await attempt(client.adjust_margin(position.id, "add", 10))
        await attempt(client.set_tpsl(position.id, 60000, 30000))
        await attempt(client.cancel_order(resting.id))
        await attempt(client.cancel_order(resting.id))  # ORDER_NOT_OPEN
        await attempt(client.get_order("nope"))  # NOT_FOUND
        await attempt(client.create_order("BTC_USDT", "buy", "limit", "0.0001", price="1"))
        await attempt(client.create_order("BTC_USDT", "buy", "market", "1000", leverage=1))
        await attempt(client.send("GET", "/order/open?userId=demo"))  # FORBIDDEN_SCOPE
        await attempt(client.cancel_all())
        sandbox.set_faults({"seed": 3, "drop_after_commit": 1.0})
        await attempt(client.create_order("BTC_USDT", "buy", "limit", "0.001", price="30000"))
        await attempt(client.close_position(position.id))
        sandbox.set_faults({"clock_skew_ms": 90_000})
        await attempt(client.positions())
        sandbox.set_faults({})
    wrong = demo_settings(sandbox, api_key_id="hygiene-key", api_key_secret=SECRET + "x")
    async with LevretClient(wrong) as client:
        await attempt(client.positions())  # INVALID_API_KEY / INVALID_SIGNATURE
    codes = {getattr(e, "code", None) for e in errors}
    assert {"ORDER_NOT_OPEN", "NOT_FOUND", "VALIDATION_ERROR", "FORBIDDEN_SCOPE"} <= codes
    assert any(isinstance(e, OutcomeUnknown) for e in errors)
    assert any(isinstance(e, AuthError) for e in errors)
    for exc in errors:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for record in caplog.records:
        texts += [record.getMessage(), record.exc_text or ""]
    assert caplog.records
    assert not [t for t in texts if SECRET in t]


@pytest.mark.anyio
async def test_another_client_eating_the_keys_budget_slows_it_without_refusals(
    sandbox_factory: Any,
) -> None:
    """Two clients of one key on a 30-per-2-s window: each learns of the other only from the
    exchange's headers, slows down, and is refused at most once."""
    sandbox = sandbox_factory(rate_limit=30, rate_window=2)
    settings = demo_settings(sandbox, rate_limit_per_minute=900, rate_window_seconds=2)
    async with LevretClient(settings) as ours, LevretClient(settings) as other:

        async def overviews(count: int) -> None:
            for _ in range(count):
                await ours.account_overview()

        async def positions(count: int) -> None:
            # Another read: the same request signed by two clients in one millisecond would
            # carry the same signature, which the exchange refuses as a replay.
            for _ in range(count):
                await other.positions()

        started = time.monotonic()
        await asyncio.gather(overviews(40), positions(40))
        elapsed = time.monotonic() - started
    assert ours.budget.refusals <= 1 and other.budget.refusals <= 1
    # 80 reads at 27 a window (less the reserve) take at least two windows more.
    assert elapsed >= 4
    served = [
        r
        for path in ("/api/v1/wallet/account-overview", "/api/v1/positions")
        for r in log_of(sandbox, "GET", path)
        if r["status"] == 200
    ]
    assert len(served) == 80
