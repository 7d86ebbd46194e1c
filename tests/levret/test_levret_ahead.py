"""Market reads started ahead: taken once while young, made again when stale or failed.

The unit tests drive `ReadsAhead` with a fake clock; the client tests count what an httpx
MockTransport is asked, so a read started ahead and taken is proved to be sent once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.levret import ahead
from reconciler.levret.ahead import ReadsAhead
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_ahead
from reconciler.levret.requests import calls_for
from reconciler.levret.settings import ClientSettings
from reconciler.model.plan import ReadHint
from reconciler.render.plan import load_plan

SCENARIOS = Path(__file__).parents[1] / "scenarios"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """A read that counts its sends and answers with its count."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> int:
        self.sent += 1
        return self.sent


@pytest.mark.anyio
async def test_a_read_started_ahead_is_taken_once_while_young() -> None:
    clock, reads = Clock(), Reads()
    early = ReadsAhead(clock=clock)
    early.start("k", reads())
    clock.now += ahead.MAX_AGE_S
    assert await early.take("k", reads) == 1  # the one started ahead
    assert await early.take("k", reads) == 2  # taken: the next caller reads itself
    assert reads.sent == 2


@pytest.mark.anyio
async def test_a_stale_read_is_dropped_and_made_again() -> None:
    clock, reads = Clock(), Reads()
    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return -1

    early = ReadsAhead(clock=clock)
    early.start("k", slow())
    await asyncio.sleep(0)  # the read is out
    clock.now += ahead.MAX_AGE_S + 0.001
    assert await early.take("k", reads) == 1
    assert len(early) == 0


@pytest.mark.anyio
async def test_a_failed_read_is_made_again_and_its_failure_is_the_readers_own() -> None:
    clock = Clock()

    async def fails() -> int:
        raise httpx.ReadTimeout("ahead")

    early = ReadsAhead(clock=clock)
    early.start("k", fails())
    early.start("bad", fails())
    assert await early.take("k", Reads()) == 1
    with pytest.raises(httpx.ConnectError, match="own"):

        async def own_failure() -> int:
            raise httpx.ConnectError("own")

        await early.take("bad", own_failure)


@pytest.mark.anyio
async def test_a_read_in_flight_is_waited_for_not_sent_again() -> None:
    gate = asyncio.Event()
    reads = Reads()

    async def slow() -> int:
        await gate.wait()
        return 7

    early = ReadsAhead(clock=Clock())
    early.start("k", slow())
    taker = asyncio.ensure_future(early.take("k", reads))
    await asyncio.sleep(0)
    assert not taker.done()
    gate.set()
    assert await taker == 7
    assert reads.sent == 0


@pytest.mark.anyio
async def test_a_key_already_waiting_is_kept_and_close_cancels_what_nobody_took() -> None:
    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return 1

    first, second = slow(), slow()
    early = ReadsAhead(clock=Clock())
    early.start("k", first)
    early.start("k", second)  # closed unsent, not left to warn "never awaited"
    assert second.cr_frame is None
    assert len(early) == 1
    task = next(iter(early._reads.values()))[1]
    early.close()
    await asyncio.sleep(0)
    assert task.cancelled() and len(early) == 0


def _market_client(asked: list[str]) -> LevretClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path.rsplit('/', 1)[-1]} {request.url.query.decode()}")
        data: Any
        if request.url.path.endswith("/market-stats"):
            symbol = request.url.params["symbol"]
            data = {"symbol": symbol, "markPrice": "100", "lastPrice": "100"}
        else:
            data = {"bids": [["99", "1"]], "asks": [["101", "1"]]}
        return httpx.Response(200, json={"success": True, "data": data})

    settings = ClientSettings(api_key_id="k1", api_key_secret="unit-secret", user_id="u1")
    return LevretClient(settings, transport=httpx.MockTransport(handler))


@pytest.mark.anyio
async def test_the_client_sends_a_market_read_started_ahead_once() -> None:
    asked: list[str] = []
    async with _market_client(asked) as client:
        client.read_market_ahead(stats=["A_USDT"])
        stats = await client.market_stats("A_USDT")
        book = await client.orderbook("B_USDT", depth=1)
        deeper = await client.orderbook("B_USDT", depth=5)  # book tops are never read ahead
    assert stats.mark_price == 100 and book.bids == deeper.bids
    assert sorted(asked) == [
        "market-stats symbol=A_USDT",
        "orderbook symbol=B_USDT&depth=1",
        "orderbook symbol=B_USDT&depth=5",
    ]


@pytest.mark.anyio
async def test_apply_reads_ahead_only_the_marks_of_the_symbols_its_plan_acts_on() -> None:
    """A saved plan is the user's file: a hint naming symbols the plan does not touch sends
    nothing for them."""
    plan = load_plan((SCENARIOS / "ladder_replace" / "plan.json").read_bytes(), calls_for=calls_for)
    assert {action.symbol for action in plan.actions} == {"SOL_USDT"}
    hint = ReadHint(
        open_orders=4, market_stats=("SOL_USDT", "XRP_USDT"), books=("SOL_USDT", "ZZZ_USDT")
    )
    asked: list[str] = []
    async with _market_client(asked) as client:
        read_ahead(client, plan.model_copy(update={"read_hint": hint}))
        await client.market_stats("SOL_USDT")
    # Only the marks: apply's read before its first call needs no book top (the plan's
    # crossing check was made from the plan's own read, and the verification reads its own).
    assert asked == ["market-stats symbol=SOL_USDT"]
