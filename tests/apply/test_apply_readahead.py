"""A market order's position read is sent while the phase before it ends, and only then.

Each engine test holds the first phase's cancel of CCC until a condition holds; a guard's
timeout fails the test if it never does. The unit tests drive `PositionReadAhead` directly
with a clock of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

import reconciler.apply.readahead as readahead
from reconciler.apply.engine import run_apply
from reconciler.apply.readahead import PositionReadAhead
from reconciler.apply.report import ApplyReport
from reconciler.model.account import Order, Position
from reconciler.model.intents import CancelOrder
from reconciler.model.plan import Action, Phase
from tests.apply.test_apply import (
    QUICK,
    FakeExchange,
    make_plan,
    order_action,
    read_fake,
    target_planner,
    user_lock,
)

GUARD_S = 10.0


class TimelineExchange(FakeExchange):
    """Writes down every position read and every send's start and end; holds CCC's cancel
    until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: list[tuple[str, str]] = []
        self.read_of: dict[str, anyio.Event] = {}

    async def positions(self, symbol: str | None = None) -> list[Position]:
        self.timeline.append(("read", symbol or "*"))
        self.read_of.setdefault(symbol or "*", anyio.Event()).set()
        return await super().positions(symbol)

    async def iter_open_orders(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Order]:
        self.timeline.append(("orders", symbol or "*"))
        async for order in super().iter_open_orders(symbol, start_time=start_time):
            yield order

    def read_seen(self, symbol: str) -> anyio.Event:
        return self.read_of.setdefault(symbol, anyio.Event())

    async def send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        symbol = self._symbol_of(path, body or {})
        self.timeline.append(("send", symbol))
        if symbol == "CCC_USDT" and path == "/order/cancel":
            self.entered.set()
            await self.release.wait()
        try:
            return await super().send(method, path, body)
        finally:
            self.timeline.append(("done", symbol))

    def rest(self, symbol: str) -> str:
        order = self._place(
            {"symbol": symbol, "side": "buy", "orderType": "limit", "size": 1, "price": 90}
        )
        return order.id


def cancel(symbol: str, order_id: str) -> Action:
    return Action(
        intent=CancelOrder(symbol=symbol, order_id=order_id),
        phase=Phase.CANCEL_ORDERS,
        reason="not wanted",
    )


def sell_one_of_two(symbol: str) -> Action:
    """A market order sized from a long 2 (the guard compares the fresh read with that)."""
    action = order_action(symbol, "sell", Decimal(1), Phase.REDUCE, reduce_only=True)
    return action.model_copy(update={"risk": "reduce", "before": {"side": "long", "size": "2"}})


async def apply_holding_ccc(
    exchange: TimelineExchange, actions: list[Action], tmp_path: Path, release_when: Any
) -> ApplyReport:
    """Apply `actions`, releasing CCC's cancel once `release_when()` (awaited) returns."""
    snapshot = await read_fake(exchange, {})
    exchange.timeline.clear()
    report: ApplyReport | None = None

    async def release() -> None:
        try:
            with anyio.fail_after(GUARD_S):
                await exchange.entered.wait()
                await release_when()
        finally:
            exchange.release.set()  # the held send is shielded: only its release ends the apply

    async def apply() -> None:
        nonlocal report
        report = await run_apply(
            make_plan(actions, snapshot), client=exchange, desired={"BBB_USDT": Decimal(1)},
            read_snapshot=read_fake, planner=target_planner, lock=user_lock(),
            state_dir=tmp_path, settle_config=QUICK,
        )  # fmt: skip

    async with anyio.create_task_group() as group:
        group.start_soon(release)
        group.start_soon(apply)
    assert report is not None
    return report


def pass_one(exchange: TimelineExchange) -> list[tuple[str, str]]:
    """The first pass's part of the timeline: between the account read before it (the plan's
    freshness check) and the one after it (verification)."""
    whole_reads = [i for i, event in enumerate(exchange.timeline) if event == ("orders", "*")]
    return exchange.timeline[whole_reads[0] + 1 : whole_reads[1]]


@pytest.mark.anyio
async def test_the_next_phase_reads_its_position_while_the_last_call_is_in_flight(
    tmp_path: Path,
) -> None:
    exchange = TimelineExchange()
    exchange.move("BBB_USDT", Decimal(2))
    actions = [cancel("CCC_USDT", exchange.rest("CCC_USDT")), sell_one_of_two("BBB_USDT")]
    report = await apply_holding_ccc(
        exchange, actions, tmp_path, exchange.read_seen("BBB_USDT").wait
    )
    assert [r.outcome for r in report.passes[0].results] == ["accepted", "accepted"]
    timeline = pass_one(exchange)
    # Read while the cancel is held (it goes out as that call does), used by the order: the
    # phase barrier still holds, the order goes after the cancel is done.
    assert sorted(timeline[:2]) == [("read", "BBB_USDT"), ("send", "CCC_USDT")]
    assert timeline[2:] == [("done", "CCC_USDT"), ("send", "BBB_USDT"), ("done", "BBB_USDT")]
    assert exchange.positions_by_symbol["BBB_USDT"].size == Decimal(1)


@pytest.mark.anyio
async def test_a_symbol_of_the_current_phase_is_read_only_after_its_own_chain(
    tmp_path: Path,
) -> None:
    exchange = TimelineExchange()
    exchange.move("BBB_USDT", Decimal(2))
    actions = [
        cancel("CCC_USDT", exchange.rest("CCC_USDT")),
        cancel("BBB_USDT", exchange.rest("BBB_USDT")),
        sell_one_of_two("BBB_USDT"),
    ]
    report = await apply_holding_ccc(
        exchange, actions, tmp_path, exchange.read_seen("BBB_USDT").wait
    )
    assert [r.outcome for r in report.passes[0].results] == ["accepted"] * 3
    timeline = pass_one(exchange)
    assert timeline.index(("done", "BBB_USDT")) < timeline.index(("read", "BBB_USDT"))
    assert timeline.index(("read", "BBB_USDT")) < timeline.index(("done", "CCC_USDT"))
    assert timeline.count(("read", "BBB_USDT")) == 1


@pytest.mark.anyio
async def test_a_position_that_moved_after_a_stale_read_ahead_stops_the_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read ahead is too old here: the order reads again, sees the outside change made
    after the read ahead, and is not sent."""
    monkeypatch.setattr(readahead, "MAX_AGE_S", -1.0)
    exchange = TimelineExchange()
    exchange.move("BBB_USDT", Decimal(2))
    actions = [cancel("CCC_USDT", exchange.rest("CCC_USDT")), sell_one_of_two("BBB_USDT")]

    async def read_ahead_then_moved() -> None:
        await exchange.read_seen("BBB_USDT").wait()
        exchange.move("BBB_USDT", Decimal(-1))  # someone else sold one meanwhile

    report = await apply_holding_ccc(exchange, actions, tmp_path, read_ahead_then_moved)
    cancelled, order = report.passes[0].results
    assert cancelled.outcome == "accepted"
    assert order.outcome == "not_sent" and "position is now long 1" in order.detail
    assert pass_one(exchange).count(("read", "BBB_USDT")) == 2
    assert ("send", "BBB_USDT") not in pass_one(exchange)


# -- PositionReadAhead ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def position(symbol: str = "AAA_USDT") -> Position:
    return Position(
        id="p1", user_id="u1", symbol=symbol, side="long", size=Decimal(2),
        entry_price=Decimal(100), mark_price=Decimal(100), leverage=10, margin=Decimal(20),
    )  # fmt: skip


@pytest.mark.anyio
async def test_a_read_ahead_is_taken_once_and_only_while_young() -> None:
    clock = Clock()

    async def read(symbol: str) -> Position | None:
        return position(symbol)

    ahead = PositionReadAhead(read, clock=clock)
    await ahead.read("AAA_USDT")
    clock.now += readahead.MAX_AGE_S
    assert await ahead.take("AAA_USDT") == (True, position())
    assert await ahead.take("AAA_USDT") == (False, None)  # taken: the next call reads itself
    await ahead.read("AAA_USDT")
    clock.now += readahead.MAX_AGE_S + 0.001
    assert await ahead.take("AAA_USDT") == (False, None)


@pytest.mark.anyio
async def test_a_read_in_flight_is_waited_for_and_a_failed_or_cancelled_one_is_not_used() -> None:
    gate = anyio.Event()

    async def slow(symbol: str) -> Position | None:
        await gate.wait()
        if symbol == "BAD_USDT":
            raise TimeoutError("accepted order not visible")
        return None

    ahead = PositionReadAhead(slow, clock=Clock())
    taken: list[tuple[bool, Position | None]] = []

    async def take(symbol: str) -> None:
        taken.append(await ahead.take(symbol))

    async with anyio.create_task_group() as group:
        group.start_soon(ahead.read, "AAA_USDT")
        group.start_soon(ahead.read, "BAD_USDT")
        await anyio.wait_all_tasks_blocked()
        group.start_soon(take, "AAA_USDT")
        group.start_soon(take, "BAD_USDT")
        await anyio.wait_all_tasks_blocked()
        assert taken == []  # both wait for their reads
        gate.set()
    assert sorted(taken, key=str) == [(False, None), (True, None)]  # flat; failed

    gate = anyio.Event()  # never set: the read is cancelled while it waits
    async with anyio.create_task_group() as group:
        group.start_soon(ahead.read, "CCC_USDT")
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    assert await ahead.take("CCC_USDT") == (False, None)


@pytest.mark.anyio
async def test_a_forgotten_read_is_not_taken() -> None:
    async def read(symbol: str) -> Position | None:
        return position(symbol)

    ahead = PositionReadAhead(read, clock=Clock())
    await ahead.read("AAA_USDT")
    ahead.forget(["AAA_USDT", "ZZZ_USDT"])
    assert await ahead.take("AAA_USDT") == (False, None)


@pytest.mark.anyio
async def test_symbols_read_at_once_share_one_read_and_one_left_out_reads_for_itself() -> None:
    asked: list[list[str]] = []
    alone: list[str] = []

    async def read_one(symbol: str) -> Position | None:
        alone.append(symbol)
        return position(symbol)

    async def read_many(symbols: list[str]) -> dict[str, Position | None]:
        asked.append(symbols)
        return {"AAA_USDT": position("AAA_USDT"), "BBB_USDT": None}  # CCC not shown yet

    ahead = PositionReadAhead(read_one, read_many, clock=Clock())
    await ahead.read_many(["AAA_USDT", "BBB_USDT", "CCC_USDT"])
    assert asked == [["AAA_USDT", "BBB_USDT", "CCC_USDT"]] and alone == []
    assert await ahead.take("AAA_USDT") == (True, position("AAA_USDT"))
    assert await ahead.take("BBB_USDT") == (True, None)  # shown flat
    assert await ahead.take("CCC_USDT") == (False, None)  # its call reads, and waits
    await ahead.read_many(["DDD_USDT"])  # one symbol: its own read, as before
    assert alone == ["DDD_USDT"] and await ahead.take("DDD_USDT") == (True, position("DDD_USDT"))


@pytest.mark.anyio
async def test_a_failed_shared_read_leaves_every_symbol_to_read_for_itself() -> None:
    async def read_one(symbol: str) -> Position | None:
        raise AssertionError("not asked")

    async def read_many(symbols: list[str]) -> dict[str, Position | None]:
        raise TimeoutError("no answer")

    ahead = PositionReadAhead(read_one, read_many, clock=Clock())
    await ahead.read_many(["AAA_USDT", "BBB_USDT"])
    assert [await ahead.take(s) for s in ("AAA_USDT", "BBB_USDT")] == [(False, None)] * 2


@pytest.mark.anyio
async def test_two_symbols_the_phase_does_not_touch_share_one_read_while_it_ends(
    tmp_path: Path,
) -> None:
    exchange = TimelineExchange()
    exchange.move("BBB_USDT", Decimal(2))
    exchange.move("DDD_USDT", Decimal(2))
    actions = [
        cancel("CCC_USDT", exchange.rest("CCC_USDT")),
        sell_one_of_two("BBB_USDT"),
        sell_one_of_two("DDD_USDT"),
    ]
    report = await apply_holding_ccc(exchange, actions, tmp_path, exchange.read_seen("*").wait)
    assert [r.outcome for r in report.passes[0].results] == ["accepted"] * 3
    timeline = pass_one(exchange)
    reads = [event for event in timeline if event[0] == "read"]
    assert reads == [("read", "*")]  # one read of all positions, for both orders
    assert timeline.index(("read", "*")) < timeline.index(("done", "CCC_USDT"))
    assert exchange.positions_by_symbol["BBB_USDT"].size == Decimal(1)
    assert exchange.positions_by_symbol["DDD_USDT"].size == Decimal(1)
