"""Unit edge cases of read-your-own-writes (`reconciler.apply.visibility`) and the lag rule.

The end-to-end proofs run against a sandbox whose reads really lag (`test_apply_read_lag.py`,
`test_watch_sandbox.py`, the realistic fault campaign); here a scripted client and a fake
clock pin down the rules one at a time: what a stale read looks like, a clock that jumped
backwards, a lookup that lags the listing, the timeout, and the lag that settlement waits out.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reconciler.apply.settle import SettleConfig, settle
from reconciler.apply.visibility import Expectation, VisibilityTracker, expectation_for
from reconciler.levret.errors import NotFound
from reconciler.model.account import CancelAllResult, Order, Position, SymbolSpec
from reconciler.model.desired import loads
from reconciler.model.intents import CancelAllOrders, Intent, PlaceOrder, SetLeverage
from reconciler.model.plan import Action, Phase
from reconciler.model.snapshot import Snapshot
from reconciler.run.workflow import ApplyOptions, visibility_timeout_s

SPEC = SymbolSpec(
    symbol="BTC_USDT", tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
    min_size=Decimal("0.001"), max_leverage=50,
)  # fmt: skip


def position(pid: str = "7", size: str = "1", stamp: int = 100) -> Position:
    return Position(
        id=pid, user_id="u", symbol="BTC_USDT", side="long", size=Decimal(size),
        entry_price=Decimal(100), mark_price=Decimal(100), leverage=5, margin=Decimal(20),
        updated_at=stamp,
    )  # fmt: skip


def order(oid: str, status: str = "open", stamp: int = 100, filled: str = "0") -> Order:
    return Order(
        id=oid, user_id="u", symbol="BTC_USDT", side="buy", order_type="limit", size=Decimal(1),
        price=Decimal(90), status=status, filled_size=Decimal(filled), created_at=stamp,
        updated_at=stamp,
    )  # fmt: skip


def snapshot(pos: Position | None = None, orders: tuple[Order, ...] = ()) -> Snapshot:
    return Snapshot(
        user_id="u",
        specs={"BTC_USDT": SPEC},
        positions={} if pos is None else {"BTC_USDT": pos},
        open_orders={"BTC_USDT": orders} if orders else {},
    )


MARKET_BUY = PlaceOrder(symbol="BTC_USDT", side="buy", order_type="market", size=Decimal(1))


def action(intent: Intent = MARKET_BUY, after_side: str = "long") -> Action:
    return Action(intent=intent, phase=Phase.INCREASE, after={"side": after_side}, reason="test")


def answered(order_id: str, order_type: str, status: str, filled: str, updated_at: int) -> Order:
    return Order(
        id=order_id, symbol="BTC_USDT", side="buy", order_type=order_type, size=Decimal(1),
        status=status, filled_size=Decimal(filled), created_at=updated_at, updated_at=updated_at,
    )  # fmt: skip


class Clock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Lookups:
    """`get_order` and `positions` from scripts; `positions` answers in turn."""

    def __init__(self, orders: dict[str, Order] | None = None) -> None:
        self.orders = orders or {}
        self.position_reads: list[Position | None] = []
        self.lookups = 0

    async def get_order(self, order_id: str) -> Order:
        self.lookups += 1
        if order_id not in self.orders:
            raise NotFound("no such order", code="NOT_FOUND", status=404)
        return self.orders[order_id]

    async def positions(self, symbol: str | None = None) -> list[Position]:
        current = self.position_reads.pop(0) if len(self.position_reads) > 1 else None
        if current is None and self.position_reads:
            current = self.position_reads[0]
        return [] if current is None else [current]


def tracker(clock: Clock, timeout: float = 5.0) -> VisibilityTracker:
    return VisibilityTracker(timeout_s=timeout, clock=clock, sleep=clock.sleep)


# -- what an answer leaves to wait for -----------------------------------------------------------


def test_each_answer_shape_leaves_the_expectation_a_read_can_check() -> None:
    place = action()
    filled = answered("9", "market", "filled", "1", 200)
    market = expectation_for(place, MARKET_BUY, filled, accepted_at_s=0)
    assert market is not None and market.moves_position and not market.order_resting
    rest = PlaceOrder(
        symbol="BTC_USDT", side="buy", order_type="limit", size=Decimal(1), price=Decimal(90)
    )
    resting = expectation_for(
        action(rest), rest, answered("10", "limit", "open", "0", 201), accepted_at_s=0
    )
    assert resting is not None and resting.order_resting and not resting.moves_position
    leverage = SetLeverage(symbol="BTC_USDT", position_id="7", leverage=3)
    position = Position(
        id="7", symbol="BTC_USDT", side="long", size=Decimal(1), entry_price=Decimal(100),
        mark_price=Decimal(100), leverage=3, margin=Decimal(33), updated_at=202,
    )  # fmt: skip
    lever = expectation_for(action(leverage), leverage, position, accepted_at_s=0)
    assert lever is not None and lever.position_id == "7" and lever.updated_at == 202
    every = CancelAllOrders(symbol="BTC_USDT")
    two = CancelAllResult(cancelled=["3", "4"], count=2)
    cancel_all = expectation_for(action(every), every, two, accepted_at_s=0)
    assert cancel_all is not None and cancel_all.cancelled_ids == ("3", "4")
    none = CancelAllResult(cancelled=[], count=0)
    assert expectation_for(action(every), every, none, accepted_at_s=0) is None
    assert expectation_for(place, MARKET_BUY, None, accepted_at_s=0) is None


# -- what a stale read looks like --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_position_older_than_the_fill_is_not_visible_and_a_newer_one_is() -> None:
    clock = Clock()
    visibility = tracker(clock)
    visibility.note_snapshot(snapshot(position(stamp=100)))
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="9",
                                  moves_position=True, updated_at=200))  # fmt: skip
    reads = iter([snapshot(position(stamp=100)), snapshot(position(size="2", stamp=200))])
    first = next(reads)

    async def reread() -> Snapshot:
        return next(reads)

    seen, unseen = await visibility.await_snapshot(Lookups(), first, reread)
    assert unseen == {} and seen.positions["BTC_USDT"].size == 2
    assert clock.slept == [0.05]  # one poll: the stale read was not trusted
    assert visibility.pending == []


@pytest.mark.anyio
async def test_a_clock_that_jumped_back_cannot_pass_a_stale_read_off_as_new() -> None:
    """The exchange's clock ran back between the old state and our write: the stale read's
    stamp is later than the write's, but it is a version read before the write."""
    clock = Clock()
    visibility = tracker(clock, timeout=0.3)
    visibility.note_snapshot(snapshot(position(stamp=5_000)))
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="9",
                                  moves_position=True, updated_at=1_000))  # fmt: skip
    stale = snapshot(position(stamp=5_000))

    async def reread() -> Snapshot:
        return stale

    _, unseen = await visibility.await_snapshot(Lookups(), stale, reread)
    assert [e.order_id for e in unseen["BTC_USDT"]] == ["9"]


@pytest.mark.anyio
async def test_a_resting_order_missing_from_the_listing_needs_the_lookup_to_show_it() -> None:
    clock = Clock()
    visibility = tracker(clock, timeout=0.2)
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="10",
                                  order_resting=True, updated_at=300))  # fmt: skip
    lookups = Lookups()  # NOT_FOUND: the replica has not got it yet

    async def reread() -> Snapshot:
        return snapshot()

    _, unseen = await visibility.await_snapshot(lookups, snapshot(), reread)
    assert "BTC_USDT" in unseen and lookups.lookups >= 2
    # Filled since (it is found, closed, with a fill): then the position must show the fill.
    lookups.orders["10"] = order("10", status="filled", stamp=400, filled="1")
    _, unseen = await visibility.await_snapshot(lookups, snapshot(position(stamp=100)), reread)
    assert "BTC_USDT" in unseen  # position still from before the fill
    _, unseen = await visibility.await_snapshot(lookups, snapshot(position(stamp=400)), reread)
    assert unseen == {}


@pytest.mark.anyio
async def test_a_cancelled_order_still_listed_is_a_stale_read() -> None:
    clock = Clock()
    visibility = tracker(clock, timeout=0.2)
    visibility.expect(Expectation("BTC_USDT", "cancel_order", clock(), cancelled_ids=("3",)))
    listed = snapshot(orders=(order("3"),))

    async def reread() -> Snapshot:
        return listed

    _, unseen = await visibility.await_snapshot(Lookups(), listed, reread)
    assert [e.cancelled_ids for e in unseen["BTC_USDT"]] == [("3",)]


@pytest.mark.anyio
async def test_given_up_writes_are_checked_again_but_never_waited_for_twice() -> None:
    clock = Clock()
    visibility = tracker(clock, timeout=1.0)
    visibility.expect(Expectation("BTC_USDT", "cancel_order", clock(), cancelled_ids=("3",)))
    listed = snapshot(orders=(order("3"),))

    async def reread() -> Snapshot:
        return listed

    await visibility.await_snapshot(Lookups(), listed, reread)
    waited = sum(clock.slept)
    assert waited == pytest.approx(1.0)
    _, unseen = await visibility.await_snapshot(Lookups(), listed, reread)
    assert "BTC_USDT" in unseen and sum(clock.slept) == pytest.approx(waited)
    _, unseen = await visibility.await_snapshot(Lookups(), snapshot(), reread)
    assert unseen == {} and visibility.pending == []


@pytest.mark.anyio
async def test_fresh_position_waits_for_the_write_then_times_out_naming_it() -> None:
    clock = Clock()
    visibility = tracker(clock, timeout=0.5)
    visibility.note_positions([position(stamp=100)])
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="9",
                                  moves_position=True, updated_at=200))  # fmt: skip
    lookups = Lookups()
    lookups.position_reads = [position(stamp=100), position(stamp=100), position(stamp=200)]
    assert (await visibility.fresh_position(lookups, "BTC_USDT")).updated_at == 200  # type: ignore[union-attr]
    lookups.position_reads = [position(stamp=100)]
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="11",
                                  moves_position=True, updated_at=300))  # fmt: skip
    with pytest.raises(TimeoutError, match=r"order 11 not visible after 0\.5 s"):
        await visibility.fresh_position(lookups, "BTC_USDT")


class AllPositions:
    """`positions()` of the whole account from one list, counting the reads."""

    def __init__(self, listed: list[Position]) -> None:
        self.listed = listed
        self.reads: list[str | None] = []

    async def get_order(self, order_id: str) -> Order:
        raise NotFound("no such order", code="NOT_FOUND", status=404)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        self.reads.append(symbol)
        return [p for p in self.listed if symbol is None or p.symbol == symbol]


@pytest.mark.anyio
async def test_one_read_serves_the_symbols_it_shows_and_leaves_out_one_it_does_not() -> None:
    clock = Clock()
    visibility = tracker(clock)
    btc = position(stamp=100)
    eth = position(pid="8", stamp=150).model_copy(update={"symbol": "ETH_USDT"})
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="9",
                                  moves_position=True, updated_at=200))  # fmt: skip
    visibility.expect(Expectation("ETH_USDT", "place_order", clock(), order_id="10",
                                  moves_position=True, updated_at=150))  # fmt: skip
    lookups = AllPositions([btc, eth])
    shown = await visibility.fresh_positions(lookups, ["BTC_USDT", "ETH_USDT", "SOL_USDT"])
    assert lookups.reads == [None]  # one read of every position, no symbol named
    # BTC's accepted order (stamped 200) is not in the read yet: left out, for its call to
    # read alone and wait; ETH's is; SOL has no position and nothing pending.
    assert shown == {"ETH_USDT": eth, "SOL_USDT": None}
    assert visibility.pending  # nothing is given up by a shared read


# -- the lag settlement waits out --------------------------------------------------------------


def test_without_a_measurement_the_lag_allowance_is_the_whole_timeout() -> None:
    clock = Clock()
    visibility = tracker(clock, timeout=7.0)
    assert visibility.lag_allowance_s() == 7.0


@pytest.mark.anyio
async def test_the_allowance_is_twice_the_longest_lag_seen_and_ignores_uninformative_checks() -> (
    None
):
    clock = Clock()
    visibility = tracker(clock, timeout=30.0)
    # A filled market order with no position stamp: a stale read passes it too, so it says
    # nothing about the lag.
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="8"))
    visibility.expect(Expectation("BTC_USDT", "cancel_order", clock(), cancelled_ids=("3",)))
    reads = iter([snapshot(orders=(order("3"),))] * 3 + [snapshot()])

    async def reread() -> Snapshot:
        return next(reads)

    await visibility.await_snapshot(Lookups(), next(reads), reread)
    seen_after = sum(clock.slept)  # 0.05 + 0.1 + 0.2: the cancel showed at the third poll
    assert visibility.lag_allowance_s() == pytest.approx(2 * seen_after)


@pytest.mark.anyio
async def test_settlement_believes_absence_only_from_reads_after_the_lag() -> None:
    """Every read shows no order. Inside the allowance that proves nothing: the pair that
    proves absence must both come after it."""
    now = [0]

    def clock_ms() -> int:
        return now[0]

    async def sleep(seconds: float) -> None:
        now[0] += int(seconds * 1000)

    class Empty:
        async def positions(self, symbol: str | None = None) -> list[Position]:
            return []

        async def iter_open_orders(self, symbol: str | None = None, *, start_time: Any = None):  # type: ignore[no-untyped-def]
            return
            yield

        async def iter_user_trades(self, symbol: str | None = None, *, start_time: Any = None):  # type: ignore[no-untyped-def]
            return
            yield

        async def get_order(self, order_id: str) -> Order:
            raise NotFound("no", code="NOT_FOUND", status=404)

    place = action()
    config = SettleConfig(visibility_window_s=0.1, max_reads=3)
    result = await settle(
        Empty(), place, place.intent, sent_at_ms=0, baseline=None, config=config,
        lag_allowance_s=2.0, sleep=sleep, clock_ms=clock_ms,
    )  # fmt: skip
    assert result.executed is False
    assert now[0] >= 2_100  # the consistent pair was read at 2.0 s and 2.1 s, not before
    # Inside the lag it polled at 0, 0.1, 0.3, 0.7 and 1.5 s (an effect could have shown).
    assert result.reads == 7


def test_the_option_wins_over_the_file_which_wins_over_the_default() -> None:
    plain = loads("version: 1\n")
    configured = loads("version: 1\napply: {visibility_timeout: 12}\n")
    assert visibility_timeout_s(plain, ApplyOptions()) == 30.0
    assert visibility_timeout_s(configured, ApplyOptions()) == 12.0
    assert visibility_timeout_s(configured, ApplyOptions(visibility_timeout_s=3.0)) == 3.0


def test_a_write_still_unseen_is_no_measure_of_the_lag_only_a_seen_one_is() -> None:
    """Before any write was seen, the lag is only known to be longer than some wait: the
    allowance stays the whole timeout (a lower bound of 11 ms once let settlement believe a
    lost order absent inside a 1.5 s lag)."""
    clock = Clock()
    visibility = tracker(clock, timeout=6.0)
    unseen = Expectation("BTC_USDT", "cancel_order", clock(), cancelled_ids=("3",))
    visibility._observe(unseen, False, clock() + 0.011)
    assert visibility.lag_allowance_s() == 6.0


@pytest.mark.anyio
async def test_a_later_write_does_not_make_an_earlier_one_look_unseen() -> None:
    """The version that shows the leverage change is stale for the order placed after it,
    not for the leverage change itself."""
    clock = Clock()
    visibility = tracker(clock, timeout=0.2)
    visibility.note_positions([position(stamp=100)])
    lever = Expectation(
        "BTC_USDT", "set_leverage", clock(), position_id="7", moves_position=True,
        flat_is_visible=True, updated_at=200,
    )  # fmt: skip
    visibility.expect(lever)
    visibility.note_positions([position(stamp=200)])
    visibility.expect(Expectation("BTC_USDT", "place_order", clock(), order_id="9",
                                  moves_position=True, updated_at=300))  # fmt: skip
    stale_for_order = snapshot(position(stamp=200))

    async def reread() -> Snapshot:
        return stale_for_order

    _, unseen = await visibility.await_snapshot(Lookups(), stale_for_order, reread)
    assert [e.kind for e in unseen["BTC_USDT"]] == ["place_order"]
