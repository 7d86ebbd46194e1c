"""Apply's orchestration against a scripted in-memory exchange: quick, deterministic.

`FakeExchange` executes the few calls apply makes (market orders fill at once at the mark,
limit orders rest) and can be told, per send, to drop the answer after executing, to lose the
request, to refuse it, to execute something other than asked, or to block until released.
The fake planner wants one signed size per symbol and plans one market order for the
difference, so passes, partial fills and settlement can be driven end to end.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wire import intent_of, wire_call

from reconciler import jsonnum
from reconciler.apply.engine import apply_plan, run_apply
from reconciler.apply.events import ApplyEvent
from reconciler.apply.freshness import check_fresh
from reconciler.apply.journal import Journal, read_journal
from reconciler.apply.report import ApplyFailed, ApplyInterrupted, ApplyReport
from reconciler.apply.settle import Baseline, SettleConfig, settle, take_baseline
from reconciler.errors import LockHeld, PreconditionFailed
from reconciler.levret.errors import NotFound, OrderNotOpen, OutcomeUnknown, error_for_code
from reconciler.levret.requests import POSITION_ID_PLACEHOLDER, request_for
from reconciler.model.account import CancelAllResult, Order, Position, SymbolSpec, Trade
from reconciler.model.intents import Answer, CancelOrder, Intent
from reconciler.model.plan import Action, ActionKind, Phase, Plan, Request
from reconciler.model.snapshot import Snapshot
from reconciler.render.progress import PlainProgress, RichProgress
from reconciler.run.lock import AccountLock, account_lock

USER = "u1"
SYMBOLS = ("AAA_USDT", "BBB_USDT", "CCC_USDT", "DDD_USDT", "EEE_USDT", "FFF_USDT")
QUICK = SettleConfig(
    visibility_window_s=0.0, max_reads=3, clock_skew_ms=5_000, visibility_timeout_s=5.0
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(position: Position | None) -> Decimal:
    if position is None:
        return Decimal(0)
    return position.size if position.side == "long" else -position.size


class FakeExchange:
    """Just enough of Levret for apply; `faults[n]` scripts the n-th send (0-based)."""

    def __init__(self) -> None:
        self.user_id = USER
        self.marks = {symbol: Decimal(100) for symbol in SYMBOLS}
        self.positions_by_symbol: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self.trades: list[Trade] = []
        self.sent: list[tuple[str, str, dict[str, Any] | None]] = []
        self.faults: dict[int, str] = {}
        self.fill_ratio: dict[str, Decimal] = {}
        self.fill_ratio_once: dict[str, Decimal] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight_per_symbol = 0
        self.max_in_flight = 0
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self._ids = itertools.count(1)

    # ---- writes

    def request_for(self, intent: Intent) -> Request:
        return request_for(intent, user_id=USER)

    async def execute(self, intent: Intent) -> Answer:
        request = self.request_for(intent)
        answer: Answer = await self.send(request.method, request.path, request.body)
        return answer

    async def send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        number = len(self.sent)
        self.sent.append((method, path, None if body is None else dict(body)))
        fault = self.faults.get(number, "")
        symbol = self._symbol_of(path, body or {})
        self.in_flight[symbol] = self.in_flight.get(symbol, 0) + 1
        self.max_in_flight_per_symbol = max(self.max_in_flight_per_symbol, self.in_flight[symbol])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        try:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            if fault == "block":
                self.entered.set()
                await self.release.wait()
            unknown = OutcomeUnknown(
                "answer lost", method=method, path=path, body=body, sent_at_ms=now_ms()
            )
            if fault == "lose":
                raise unknown
            if fault.startswith("reject:"):
                raise error_for_code(
                    fault.split(":", 1)[1], 400, "refused", method=method, path=path
                )
            if fault == "twist":
                twisted = dict(body or {})
                twisted["size"] = Decimal(twisted["size"]) + 1
                self._execute(path, twisted)
                raise unknown
            data = self._execute(path, dict(body or {}))
            if fault == "drop":
                raise unknown
            return data
        finally:
            self.in_flight[symbol] -= 1

    def _symbol_of(self, path: str, body: Mapping[str, Any]) -> str:
        if "symbol" in body:
            return str(body["symbol"])
        if "orderId" in body:
            return self.orders[str(body["orderId"])].symbol
        parts = path.strip("/").split("/")
        for position in self.positions_by_symbol.values():
            if position.id == parts[1]:
                return position.symbol
        return "?"

    def _stamp(self) -> int:
        """The exchange's `updatedAt`: a later write never shares its millisecond with an
        earlier one (apply tells a new version of a position from the one it read by it)."""
        self._last_stamp = max(now_ms(), getattr(self, "_last_stamp", 0) + 1)
        return self._last_stamp

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def _execute(self, path: str, body: dict[str, Any]) -> Any:
        parts = path.strip("/").split("/")
        if parts == ["order"]:
            return self._place(body)
        if parts == ["order", "cancel"]:
            order = self.orders.get(str(body["orderId"]))
            if order is None:
                raise NotFound("no such order", code="NOT_FOUND", status=404)
            if order.status not in ("open", "partially_filled"):
                raise OrderNotOpen("not open", code="ORDER_NOT_OPEN", status=409)
            self.orders[order.id] = order.model_copy(
                update={"status": "cancelled", "updated_at": self._stamp()}
            )
            return self.orders[order.id]
        if parts == ["order", "cancelAll"]:
            cancelled = [
                o.id
                for o in self.orders.values()
                if o.symbol == body.get("symbol") and o.status == "open"
            ]
            for order_id in cancelled:
                self.orders[order_id] = self.orders[order_id].model_copy(
                    update={"status": "cancelled", "updated_at": self._stamp()}
                )
            return CancelAllResult(cancelled=cancelled, count=len(cancelled))
        position = next(p for p in self.positions_by_symbol.values() if p.id == parts[1])
        if parts[2] == "close":
            side = "sell" if position.side == "long" else "buy"
            order = self._place(
                {
                    "symbol": position.symbol,
                    "side": side,
                    "orderType": "market",
                    "size": position.size,
                    "reduce_only": True,
                }
            )
            return order
        update: dict[str, Any] = {"updated_at": self._stamp()}
        if parts[2] == "leverage":
            update["leverage"] = int(body["leverage"])
        elif parts[2] == "margin":
            amount = Decimal(body["amount"])
            update["margin"] = position.margin + (amount if body["mode"] == "add" else -amount)
        elif parts[2] == "tpsl":
            if "takeProfitPrice" in body:
                update["take_profit_price"] = body["takeProfitPrice"]
            if "stopLossPrice" in body:
                update["stop_loss_price"] = body["stopLossPrice"]
        self.positions_by_symbol[position.symbol] = position.model_copy(update=update)
        return self.positions_by_symbol[position.symbol]

    def _place(self, body: Mapping[str, Any]) -> Order:
        symbol = str(body["symbol"])
        size = Decimal(body["size"])
        created = self._stamp()
        order = Order(
            id=self._next_id("o"),
            user_id=USER,
            symbol=symbol,
            side=body["side"],
            order_type=body["orderType"],
            size=size,
            price=body.get("price"),
            reduce_only=bool(body.get("reduce_only", False)),
            status="open",
            created_at=created,
            updated_at=created,
        )
        if order.order_type == "market":
            ratio = self.fill_ratio_once.pop(symbol, self.fill_ratio.get(symbol, Decimal(1)))
            filled = size * ratio
            if filled:
                self._fill(order, filled)
            status = "filled" if filled == size else "cancelled"
            order = order.model_copy(update={"status": status, "filled_size": filled})
        self.orders[order.id] = order
        return order

    def _fill(self, order: Order, size: Decimal) -> None:
        mark = self.marks[order.symbol]
        self.trades.append(
            Trade(
                id=self._next_id("t"),
                order_id=order.id,
                symbol=order.symbol,
                side=order.side,
                size=size,
                price=mark,
                fee=Decimal(0),
                realized_pnl=Decimal(0),
                timestamp=now_ms(),
            )
        )
        self.move(order.symbol, size if order.side == "buy" else -size)

    def move(self, symbol: str, delta: Decimal) -> None:
        """Change a position directly (also used by tests to set the scene)."""
        current = self.positions_by_symbol.get(symbol)
        before = signed(current)
        after = before + delta
        if after == 0:
            self.positions_by_symbol.pop(symbol, None)
            return
        side = "long" if after > 0 else "short"
        if current is None or (before > 0) != (after > 0):
            mark = self.marks[symbol]
            current = Position(
                id=self._next_id("p"),
                user_id=USER,
                symbol=symbol,
                side=side,
                size=abs(after),
                entry_price=mark,
                mark_price=mark,
                leverage=10,
                margin=mark * abs(after) / 10,
            )
        self.positions_by_symbol[symbol] = current.model_copy(
            update={"size": abs(after), "side": side, "updated_at": self._stamp()}
        )

    # ---- reads

    async def positions(self, symbol: str | None = None) -> list[Position]:
        await anyio.lowlevel.checkpoint()
        return [p for s, p in sorted(self.positions_by_symbol.items()) if symbol in (None, s)]

    async def iter_open_orders(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Order]:
        for order in list(self.orders.values()):
            if order.status in ("open", "partially_filled") and symbol in (None, order.symbol):
                yield order

    async def iter_user_trades(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Trade]:
        for trade in list(self.trades):
            if symbol in (None, trade.symbol) and trade.timestamp >= (start_time or 0):
                yield trade

    async def get_order(self, order_id: str) -> Order:
        if order_id not in self.orders:
            raise NotFound("no such order", code="NOT_FOUND", status=404)
        return self.orders[order_id]

    def writes(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        return [call for call in self.sent if call[0] == "POST"]


Desired = dict[str, Decimal]


def spec(symbol: str) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol, tick_size=Decimal("0.01"), step_size=Decimal(1), min_size=Decimal(1),
        max_leverage=50,
    )  # fmt: skip


async def read_fake(
    client: FakeExchange,
    desired: Desired,
    *,
    symbols: Iterable[str] | None = None,
    books: bool = True,
) -> Snapshot:
    wanted = set(symbols) if symbols is not None else set(SYMBOLS)
    orders: dict[str, list[Order]] = {}
    async for order in client.iter_open_orders():
        if order.symbol in wanted:
            orders.setdefault(order.symbol, []).append(order)
    return Snapshot(
        user_id=USER,
        specs={symbol: spec(symbol) for symbol in SYMBOLS},
        positions={s: p for s, p in client.positions_by_symbol.items() if s in wanted},
        open_orders={symbol: tuple(items) for symbol, items in orders.items()},
        marks={symbol: client.marks[symbol] for symbol in desired if symbol in wanted},
    )


def order_action(symbol: str, side: str, size: Decimal, phase: Phase, **extra: Any) -> Action:
    body: dict[str, Any] = {
        "userId": USER,
        "symbol": symbol,
        "side": side,
        "orderType": extra.pop("order_type", "market"),
        "size": size,
    }
    body.update(extra)
    body.setdefault("reduce_only", False)
    return Action(
        intent=intent_of(Request(method="POST", path="/order", body=body), symbol),
        phase=phase,
        risk="reduce" if phase is Phase.REDUCE else "increase",
        reason=f"{side} {size}",
    )


def position_action(
    kind: ActionKind, symbol: str, position_id: str, body: dict[str, Any]
) -> Action:
    suffix, phase = {
        "set_leverage": ("leverage", Phase.LEVERAGE),
        "adjust_margin": ("margin", Phase.MARGIN),
        "set_tpsl": ("tpsl", Phase.TPSL),
        "close_position": ("close", Phase.REDUCE),
    }[kind]
    return Action(
        intent=intent_of(
            Request(
                method="POST",
                path=f"/positions/{position_id}/{suffix}",
                body=body if kind != "close_position" else None,
            ),
            symbol,
        ),
        phase=phase,
        reason=kind,
    )


def user_lock() -> AccountLock:
    """The machine's file lock of this test's user, as a command without a shared lock takes."""
    return account_lock(None, base_url="", user_id=USER)


def make_plan(actions: Iterable[Action], snapshot: Snapshot | None = None) -> Plan:
    actions = tuple(actions)
    touched = sorted({action.symbol for action in actions})
    marks: dict[str, Decimal] = {}
    for symbol in touched:
        mark = snapshot.mark(symbol) if snapshot is not None else None
        if mark is not None:
            marks[symbol] = mark
    return Plan(
        user_id=USER,
        created_at_ms=now_ms(),
        fingerprint=snapshot.fingerprint() if snapshot else "f",
        symbol_fingerprints={
            s: snapshot.symbol_fingerprint(s) if snapshot else "f" for s in touched
        },
        marks=marks,
        actions=actions,
    )


def target_planner(desired: Desired, snapshot: Snapshot) -> Plan:
    """One market order per symbol for the difference between target and live size."""
    actions = []
    for symbol, target in sorted(desired.items()):
        current = signed(snapshot.positions.get(symbol))
        diff = target - current
        if diff == 0:
            continue
        reduces = abs(target) < abs(current) and (target == 0 or (target > 0) == (current > 0))
        phase = Phase.REDUCE if reduces else Phase.INCREASE
        actions.append(order_action(symbol, "buy" if diff > 0 else "sell", abs(diff), phase))
    actions.sort(key=lambda a: (a.phase, a.symbol))
    return make_plan(actions, snapshot)


async def run(
    exchange: FakeExchange,
    plan: Plan,
    desired: Desired,
    tmp_path: Path,
    *,
    parallelism: int = 4,
    max_passes: int = 3,
    progress: Any = None,
) -> ApplyReport:
    with Journal(tmp_path / "journal.jsonl") as journal:
        return await apply_plan(
            plan,
            client=exchange,
            desired=desired,
            read_snapshot=read_fake,
            planner=target_planner,
            journal=journal,
            parallelism=parallelism,
            max_passes=max_passes,
            progress=progress,
            settle_config=QUICK,
        )


async def planned(exchange: FakeExchange, desired: Desired) -> Plan:
    return target_planner(desired, await read_fake(exchange, desired))


# -- ordering and concurrency ---------------------------------------------------------------


@pytest.mark.anyio
async def test_phases_are_barriers_across_symbols(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(5))
    exchange.move("BBB_USDT", Decimal(-4))
    aaa = exchange.positions_by_symbol["AAA_USDT"].id
    bbb = exchange.positions_by_symbol["BBB_USDT"].id
    exchange._place(
        {"symbol": "CCC_USDT", "side": "buy", "orderType": "limit", "size": 1, "price": 90}
    )
    resting = next(iter(exchange.orders))
    actions = [
        Action(intent=CancelOrder(symbol="CCC_USDT", order_id=resting),
               phase=Phase.CANCEL_ORDERS, reason="not wanted"),
        position_action("set_leverage", "AAA_USDT", aaa, {"leverage": 3}),
        order_action("BBB_USDT", "buy", Decimal(2), Phase.REDUCE),
        order_action("DDD_USDT", "buy", Decimal(1), Phase.INCREASE),
        position_action("set_tpsl", "AAA_USDT", aaa, {"takeProfitPrice": Decimal(120)}),
        order_action("EEE_USDT", "buy", Decimal(1), Phase.PLACE_ORDERS, order_type="limit",
                     price=Decimal(80)),
    ]  # fmt: skip
    desired = {"AAA_USDT": Decimal(5), "BBB_USDT": Decimal(-2), "DDD_USDT": Decimal(1)}
    report = await run(exchange, make_plan(actions), desired, tmp_path)
    assert [r.outcome for r in report.passes[0].results] == ["accepted"] * 6
    assert report.converged and report.exit_code == 0
    phases_sent = [
        next(
            a.phase
            for a in actions
            if wire_call(a, USER).path == path and wire_call(a, USER).body == body
        )
        for _, path, body in exchange.writes()
    ]
    assert phases_sent == sorted(phases_sent)
    assert exchange.positions_by_symbol["AAA_USDT"].leverage == 3
    assert bbb == exchange.positions_by_symbol["BBB_USDT"].id


@pytest.mark.anyio
async def test_one_call_in_flight_per_symbol_and_parallelism_bounds_symbols(
    tmp_path: Path,
) -> None:
    exchange = FakeExchange()
    actions = [
        order_action(symbol, "buy", Decimal(1), Phase.INCREASE)
        for symbol in SYMBOLS
        for _ in range(3)
    ]
    desired = {symbol: Decimal(3) for symbol in SYMBOLS}
    report = await run(exchange, make_plan(actions), desired, tmp_path, parallelism=2)
    assert report.converged
    assert exchange.max_in_flight_per_symbol == 1
    assert exchange.max_in_flight == 2
    # Within a symbol, strictly the plan's order: all three of a symbol in sequence.
    assert len(exchange.writes()) == 18


@pytest.mark.anyio
async def test_refusal_stops_that_symbol_only_and_is_not_retried(tmp_path: Path) -> None:
    exchange = FakeExchange()
    actions = [
        order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE),
        order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE),
        order_action("BBB_USDT", "buy", Decimal(1), Phase.INCREASE),
        order_action("BBB_USDT", "buy", Decimal(1), Phase.INCREASE),
    ]
    exchange.faults[0] = "reject:INSUFFICIENT_MARGIN"
    desired = {"AAA_USDT": Decimal(2), "BBB_USDT": Decimal(2)}
    report = await run(exchange, make_plan(actions), desired, tmp_path)
    outcomes = [(r.action.symbol, r.outcome) for r in report.passes[0].results]
    assert outcomes == [
        ("AAA_USDT", "rejected"),
        ("AAA_USDT", "not_sent"),
        ("BBB_USDT", "accepted"),
        ("BBB_USDT", "accepted"),
    ]
    assert report.passes[0].results[0].code == "INSUFFICIENT_MARGIN"
    assert not report.converged and report.exit_code == 5
    assert "AAA_USDT" in report.excluded
    assert len(report.passes) == 1  # nothing left that a later pass may touch
    assert [path for _, path, _ in exchange.writes()].count("/order") == 3
    with pytest.raises(ApplyFailed) as failure:
        report.raise_for_status()
    assert failure.value.exit_code == 5
    assert "INSUFFICIENT_MARGIN" in str(failure.value)
    assert "AAA_USDT" in str(failure.value)


# -- the new position's id --------------------------------------------------------------------


@pytest.mark.anyio
async def test_placeholder_is_the_position_the_earlier_order_opened(tmp_path: Path) -> None:
    exchange = FakeExchange()
    body = {"mode": "add", "amount": Decimal("12.5")}
    actions = [
        order_action("AAA_USDT", "buy", Decimal(2), Phase.INCREASE),
        # the planner's top-up of a new position follows its order in the same phase
        position_action("adjust_margin", "AAA_USDT", POSITION_ID_PLACEHOLDER, body).model_copy(
            update={"phase": Phase.INCREASE}
        ),
    ]
    report = await run(exchange, make_plan(actions), {"AAA_USDT": Decimal(2)}, tmp_path)
    assert report.converged
    position = exchange.positions_by_symbol["AAA_USDT"]
    method, path, sent_body = exchange.writes()[1]
    assert (method, path) == ("POST", f"/positions/{position.id}/margin")
    assert sent_body == body
    assert position.margin == Decimal(20) + Decimal("12.5")


@pytest.mark.anyio
async def test_placeholder_without_a_position_is_not_sent(tmp_path: Path) -> None:
    exchange = FakeExchange()
    actions = [
        order_action("AAA_USDT", "buy", Decimal(2), Phase.INCREASE, order_type="limit",
                     price=Decimal(90)),
        position_action("set_tpsl", "AAA_USDT", POSITION_ID_PLACEHOLDER,
                        {"stopLossPrice": Decimal(80)}),
    ]  # fmt: skip
    report = await run(exchange, make_plan(actions), {}, tmp_path)
    results = report.passes[0].results
    assert [r.outcome for r in results] == ["accepted", "not_sent"]
    assert "no open AAA_USDT position" in results[1].detail
    assert len(exchange.writes()) == 1


# -- unknown outcomes ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_dropped_order_settles_executed_and_is_never_resent(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(3), "BBB_USDT": Decimal(2)}
    plan = await planned(exchange, desired)
    exchange.faults[0] = "drop"
    report = await run(exchange, plan, desired, tmp_path)
    first = report.passes[0].results[0]
    assert first.outcome == "settled_executed"
    assert first.settlement is not None and first.settlement.reads == 1
    assert report.converged
    assert len(exchange.writes()) == 2  # one order per symbol, none resent
    assert signed(exchange.positions_by_symbol["AAA_USDT"]) == 3


@pytest.mark.anyio
async def test_lost_order_needs_two_consistent_reads_then_is_replanned(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(3)}
    plan = await planned(exchange, desired)
    exchange.faults[0] = "lose"
    report = await run(exchange, plan, desired, tmp_path)
    first = report.passes[0].results[0]
    assert first.outcome == "settled_not_executed"
    # No write of the run has shown the exchange's lag yet, so the reads inside the
    # visibility timeout cannot count (it polls there, as the order could still show); two
    # consistent reads after it prove absence.
    assert first.settlement is not None and first.settlement.reads > 3
    assert report.converged and len(report.passes) == 2
    assert len(exchange.writes()) == 2  # pass 2 sent its own freshly planned order
    assert signed(exchange.positions_by_symbol["AAA_USDT"]) == 3


@pytest.mark.anyio
async def test_unexplained_change_stays_unknown_and_the_symbol_is_left_alone(
    tmp_path: Path,
) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(3), "BBB_USDT": Decimal(1)}
    plan = await planned(exchange, desired)
    exchange.faults[0] = "twist"  # executes a different size, then loses the answer
    report = await run(exchange, plan, desired, tmp_path)
    first = report.passes[0].results[0]
    assert first.outcome == "unknown"
    assert first.settlement is not None and first.settlement.reads > QUICK.max_reads
    assert "AAA_USDT" in report.excluded
    assert not report.converged
    assert [body["symbol"] for _, _, body in exchange.writes() if body] == [
        "AAA_USDT",
        "BBB_USDT",
    ]


@pytest.mark.anyio
async def test_dropped_margin_move_settles_from_the_margin_delta(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(2))
    position = exchange.positions_by_symbol["AAA_USDT"]
    action = position_action(
        "adjust_margin", "AAA_USDT", position.id, {"mode": "reduce", "amount": Decimal(5)}
    )
    exchange.faults[0] = "drop"
    report = await run(exchange, make_plan([action]), {"AAA_USDT": Decimal(2)}, tmp_path)
    result = report.passes[0].results[0]
    assert result.outcome == "settled_executed"
    assert result.settlement is not None
    assert result.settlement.evidence["expected_change"] == Decimal(-5)
    assert len(exchange.writes()) == 1


# -- passes ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_partial_fill_is_finished_by_a_second_pass(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.fill_ratio_once["AAA_USDT"] = Decimal("0.5")
    desired = {"AAA_USDT": Decimal(4)}
    report = await run(exchange, await planned(exchange, desired), desired, tmp_path)
    assert [body["size"] for _, _, body in exchange.writes() if body] == [4, 2]
    assert report.converged and len(report.passes) == 2
    assert [len(p.plan.actions) for p in report.passes] == [1, 1]
    assert signed(exchange.positions_by_symbol["AAA_USDT"]) == 4


@pytest.mark.anyio
async def test_not_converged_after_the_pass_limit_is_exit_5(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.fill_ratio["AAA_USDT"] = Decimal("0.5")
    desired = {"AAA_USDT": Decimal(8)}
    report = await run(exchange, await planned(exchange, desired), desired, tmp_path, max_passes=1)
    assert len(report.passes) == 2
    assert [body["size"] for _, _, body in exchange.writes() if body] == [8, 4]
    assert not report.converged and report.exit_code == 5
    assert [
        wire_call(a, USER).body["size"] for a in report.remaining if wire_call(a, USER).body
    ] == [2]
    assert "not converged" in report.summary()


# -- interruption -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_waits_for_the_call_in_flight_and_journals_it(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(1), "BBB_USDT": Decimal(1)}
    actions = [
        order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE),
        order_action("BBB_USDT", "buy", Decimal(1), Phase.PLACE_ORDERS, order_type="limit",
                     price=Decimal(90)),
    ]  # fmt: skip
    exchange.faults[0] = "block"
    reports: list[ApplyReport] = []

    async def apply() -> None:
        with pytest.raises(ApplyInterrupted) as interrupted:
            await run(exchange, make_plan(actions), desired, tmp_path)
        reports.append(interrupted.value.report)

    async with anyio.create_task_group() as group:
        group.start_soon(apply)
        await exchange.entered.wait()
        group.cancel_scope.cancel()
        exchange.release.set()

    (report,) = reports
    assert report.interrupted and report.exit_code == 5
    assert [r.outcome for r in report.passes[0].results] == ["accepted", "not_sent"]
    assert len(exchange.writes()) == 1
    records = read_journal(tmp_path / "journal.jsonl")
    assert [r["type"] for r in records] == [
        "plan",
        "intent",
        "result",
        "result",
        "interrupted",
        "end",
    ]
    assert records[2]["outcome"] == "accepted"
    assert records[3]["outcome"] == "not_sent"


@pytest.mark.anyio
async def test_cancel_stops_the_same_symbols_next_call(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(1))
    position_id = exchange.positions_by_symbol["AAA_USDT"].id
    actions = [
        position_action("set_leverage", "AAA_USDT", position_id, {"leverage": 3}),
        position_action("set_leverage", "AAA_USDT", position_id, {"leverage": 4}),
    ]
    exchange.faults[0] = "block"
    reports: list[ApplyReport] = []

    async def apply() -> None:
        with pytest.raises(ApplyInterrupted) as interrupted:
            await run(exchange, make_plan(actions), {"AAA_USDT": Decimal(1)}, tmp_path)
        reports.append(interrupted.value.report)

    async with anyio.create_task_group() as group:
        group.start_soon(apply)
        await exchange.entered.wait()
        group.cancel_scope.cancel()
        exchange.release.set()

    assert [r.outcome for r in reports[0].results] == ["accepted", "not_sent"]
    assert len(exchange.writes()) == 1
    assert exchange.positions_by_symbol["AAA_USDT"].leverage == 3


# -- journal and progress ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_journal_records_every_step_in_order(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2)}
    plan = await planned(exchange, desired)
    exchange.faults[0] = "drop"
    await run(exchange, plan, desired, tmp_path)
    records = read_journal(tmp_path / "journal.jsonl")
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert [r["type"] for r in records] == [
        "plan",
        "intent",
        "result",
        "settlement",
        "verification",
        "end",
    ]
    intent, result, settlement = records[1], records[2], records[3]
    assert intent["request"] == {
        "method": "POST",
        "path": "/order",
        "body": wire_call(plan.actions[0], USER).body,
    }
    assert intent["baseline"] == {"position": None, "old_order_ids": []}
    assert result["outcome"] == "unknown" and result["latency_ms"] >= 0
    assert settlement["outcome"] == "settled_executed"
    assert settlement["evidence"]["matching_orders"][0]["size"] == Decimal(2)
    assert records[-2]["converged"] is True
    assert records[-1]["exit_code"] == 0


class DurabilityCheckingExchange(FakeExchange):
    """Checks, at each send, what of the journal is on disk (up to the end of the last
    finished `fsync`): this call's intent, and the result of each earlier call of its symbol."""

    def __init__(self, journal_path: Path, durable_bytes: list[int]) -> None:
        super().__init__()
        self.journal_path = journal_path
        self.durable_bytes = durable_bytes
        self.checked = 0

    async def send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        written = self.journal_path.read_bytes()
        on_disk = written[: max(self.durable_bytes, default=0)]
        symbol = self._symbol_of(path, body or {})

        def of_symbol(data: bytes, kind: str) -> list[dict[str, Any]]:
            records = [jsonnum.loads(line) for line in data.splitlines()]
            return [r for r in records if r["type"] == kind and r["symbol"] == symbol]

        this_call = of_symbol(written, "intent")[-1]
        assert this_call["request"]["body"] == body
        assert this_call in of_symbol(on_disk, "intent")  # written ahead, durably
        earlier = {r["index"] for r in of_symbol(on_disk, "intent")} - {this_call["index"]}
        assert earlier <= {r["index"] for r in of_symbol(on_disk, "result")}
        self.checked += 1
        return await super().send(method, path, body)


@pytest.mark.anyio
async def test_each_call_is_on_disk_before_it_is_sent_and_its_result_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable_bytes: list[int] = []
    real_fsync = os.fsync

    def tracking_fsync(descriptor: int) -> None:
        size = os.fstat(descriptor).st_size
        real_fsync(descriptor)
        durable_bytes.append(size)

    monkeypatch.setattr(os, "fsync", tracking_fsync)
    exchange = DurabilityCheckingExchange(tmp_path / "journal.jsonl", durable_bytes)
    actions = [
        order_action(symbol, "buy", Decimal(1), Phase.INCREASE)
        for symbol in SYMBOLS[:4]
        for _ in range(3)
    ]
    desired = {symbol: Decimal(3) for symbol in SYMBOLS[:4]}
    report = await run(exchange, make_plan(actions), desired, tmp_path, parallelism=4)
    assert report.converged
    assert exchange.checked == 12
    assert exchange.max_in_flight == 4
    assert len(durable_bytes) < 2 * 12 + 3  # concurrent records shared fsyncs


@pytest.mark.anyio
async def test_plain_progress_writes_one_line_per_event(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2), "BBB_USDT": Decimal(-1)}
    stream = io.StringIO()
    events: list[ApplyEvent] = []
    plain = PlainProgress(stream)

    def sink(event: ApplyEvent) -> None:
        events.append(event)
        plain(event)

    await run(exchange, await planned(exchange, desired), desired, tmp_path, progress=sink)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "apply: pass 1: 2 action(s) on 2 symbol(s)"
    assert any("[2/2]" in line and "-> accepted" in line for line in lines)
    assert lines[-2] == "apply: pass 1: verified, converged"
    assert lines[-1].startswith("apply: converged after 1 pass")
    assert all(line.isprintable() for line in lines)


@pytest.mark.anyio
async def test_rich_progress_draws_a_pass_and_reports_failures(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2), "BBB_USDT": Decimal(1)}
    exchange.faults[0] = "reject:VALIDATION_ERROR"
    stream = io.StringIO()
    with RichProgress(stream) as progress:
        await run(exchange, await planned(exchange, desired), desired, tmp_path, progress=progress)
    text = stream.getvalue()
    assert "pass 1" in text
    assert "AAA_USDT place_order" in text and "rejected" in text
    assert "not converged (1 action(s) still planned) after 1 pass" in text


# -- settlement rules -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_settle_waits_a_window_between_reads_before_believing_absence() -> None:
    exchange = FakeExchange()
    action = order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE)
    baseline = await take_baseline(exchange, action, now_ms=now_ms())
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    config = SettleConfig(visibility_window_s=0.75, max_reads=4)
    result = await settle(
        exchange, action, action.intent, sent_at_ms=now_ms(), baseline=baseline,
        config=config, sleep=sleep,
    )  # fmt: skip
    assert result.executed is False and result.reads == 2
    assert waits == [0.75]


@pytest.mark.anyio
async def test_baseline_counts_recently_filled_orders_as_old() -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(2))
    closing = exchange._execute(
        f"/positions/{exchange.positions_by_symbol['AAA_USDT'].id}/close", {}
    )  # its answer was lost: apply never learnt this order's id
    action = order_action("AAA_USDT", "sell", Decimal(2), Phase.INCREASE)
    baseline = await take_baseline(exchange, action, now_ms=now_ms())
    assert closing.id in baseline.old_order_ids
    result = await settle(
        exchange, action, action.intent, sent_at_ms=now_ms(), baseline=baseline, config=QUICK
    )
    assert result.executed is False  # the closing order is not mistaken for this one


@pytest.mark.anyio
async def test_settle_ignores_orders_it_already_knows() -> None:
    exchange = FakeExchange()
    action = order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE)
    earlier = exchange._place(wire_call(action, USER).body or {})  # same intent, placed before
    baseline = Baseline(position=None)
    result = await settle(
        exchange, action, action.intent, sent_at_ms=now_ms(), baseline=baseline,
        known_order_ids={earlier.id}, config=QUICK,
    )  # fmt: skip
    assert result.executed is False


@pytest.mark.anyio
@pytest.mark.parametrize("executed", [True, False])
async def test_settle_position_calls_by_their_visible_effect(executed: bool) -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(2))
    position_id = exchange.positions_by_symbol["AAA_USDT"].id
    cases = [
        position_action("set_leverage", "AAA_USDT", position_id, {"leverage": 7}),
        position_action(
            "set_tpsl", "AAA_USDT", position_id, {"takeProfitPrice": Decimal(130),
                                                   "stopLossPrice": None}
        ),
        position_action("close_position", "AAA_USDT", position_id, {}),
    ]  # fmt: skip
    for action in cases:
        if executed:
            exchange._execute(
                wire_call(action, USER).path, dict(wire_call(action, USER).body or {})
            )
        result = await settle(
            exchange, action, action.intent, sent_at_ms=now_ms(), baseline=None, config=QUICK
        )
        assert result.executed is executed, action.kind


@pytest.mark.anyio
async def test_settle_cancel_by_the_order_status() -> None:
    exchange = FakeExchange()
    order = exchange._place(
        {"symbol": "AAA_USDT", "side": "buy", "orderType": "limit", "size": 1, "price": 90}
    )
    action = Action(
        intent=intent_of(
            Request(method="POST", path="/order/cancel", body={"orderId": order.id}), "AAA_USDT"
        ),
        phase=Phase.CANCEL_ORDERS,
        reason="not wanted",
    )
    still_open = await settle(
        exchange, action, action.intent, sent_at_ms=now_ms(), baseline=None, config=QUICK
    )
    assert still_open.executed is False
    exchange._execute("/order/cancel", {"orderId": order.id})
    gone = await settle(
        exchange, action, action.intent, sent_at_ms=now_ms(), baseline=None, config=QUICK
    )
    assert gone.executed is True


# -- preconditions --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_check_fresh_accepts_an_unchanged_account() -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2)}
    plan = await planned(exchange, desired)
    check_fresh(plan, await read_fake(exchange, desired), now_ms=now_ms())


@pytest.mark.anyio
async def test_check_fresh_lists_every_reason_a_plan_is_stale() -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(1))
    desired = {"AAA_USDT": Decimal(2), "BBB_USDT": Decimal(1)}
    plan = await planned(exchange, desired)
    exchange.move("AAA_USDT", Decimal(1))
    exchange.marks["BBB_USDT"] = Decimal(103)
    with pytest.raises(PreconditionFailed) as stale:
        check_fresh(
            plan,
            await read_fake(exchange, desired),
            now_ms=(plan.created_at_ms or 0) + 16 * 60 * 1000,
        )
    text = str(stale.value)
    assert stale.value.exit_code == 3
    assert "960 s old" in text
    assert "AAA_USDT: positions or open orders changed" in text
    assert "BBB_USDT: mark moved 300.0 bps" in text


@pytest.mark.anyio
async def test_run_apply_refuses_a_stale_plan_before_sending(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2)}
    plan = await planned(exchange, desired)
    exchange.move("AAA_USDT", Decimal(1))
    journal = tmp_path / "j.jsonl"
    with pytest.raises(PreconditionFailed):
        await run_apply(
            plan, client=exchange, desired=desired, read_snapshot=read_fake,
            planner=target_planner, lock=user_lock(), state_dir=tmp_path, journal_path=journal,
        )  # fmt: skip
    assert exchange.writes() == []
    assert [r["type"] for r in read_journal(journal)] == ["plan", "precondition", "end"]
    assert account_lock(None, base_url="", user_id=USER).holder() is None  # released


@pytest.mark.anyio
async def test_run_apply_fails_at_once_while_the_account_is_locked(tmp_path: Path) -> None:
    exchange = FakeExchange()
    desired = {"AAA_USDT": Decimal(2)}
    plan = await planned(exchange, desired)
    with account_lock(None, base_url="", user_id=USER), pytest.raises(LockHeld) as held:
        await run_apply(
            plan, client=exchange, desired=desired, read_snapshot=read_fake,
            planner=target_planner, lock=user_lock(), state_dir=tmp_path,
        )  # fmt: skip
    assert f"pid {__import__('os').getpid()}" in str(held.value)
    assert exchange.sent == []
    report = await run_apply(
        plan, client=exchange, desired=desired, read_snapshot=read_fake,
        planner=target_planner, lock=user_lock(), state_dir=tmp_path, settle_config=QUICK,
    )  # fmt: skip
    assert report.converged
    assert report.journal_path is not None and report.journal_path.parent == tmp_path / "journal"


class CountingExchange(FakeExchange):
    """Counts the reads a baseline can cost: positions, open orders, fills."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.reads[name] = self.reads.get(name, 0) + 1

    async def positions(self, symbol: str | None = None) -> list[Position]:
        self._count("positions")
        return await super().positions(symbol)

    async def iter_open_orders(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Order]:
        self._count("open_orders")
        async for order in super().iter_open_orders(symbol, start_time=start_time):
            yield order

    async def iter_user_trades(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Trade]:
        self._count("trades")
        async for trade in super().iter_user_trades(symbol, start_time=start_time):
            yield trade


@pytest.mark.anyio
async def test_orders_of_a_pass_share_one_baseline_and_still_settle(tmp_path: Path) -> None:
    exchange = CountingExchange()
    desired: Desired = {}
    snapshot = await read_fake(exchange, desired)
    ladder = [
        order_action("AAA_USDT", "buy", Decimal(1), Phase.PLACE_ORDERS, order_type="limit",
                     price=Decimal(90 - step))
        for step in range(4)
    ]  # fmt: skip
    exchange.faults[2] = "drop"  # the third order executes, its answer is lost
    exchange.reads.clear()
    report = await run_apply(
        make_plan(ladder, snapshot), client=exchange, desired=desired, read_snapshot=read_fake,
        planner=target_planner, lock=user_lock(), state_dir=tmp_path, settle_config=QUICK,
    )  # fmt: skip
    outcomes = [r.outcome for r in report.results]
    assert outcomes == ["accepted", "accepted", "settled_executed", "not_sent"]
    assert len(exchange.writes()) == 3  # never resent
    # The freshness read, one read of recent fills for the pass, the settlement's reads and
    # the verification read: no read per order.
    assert exchange.reads["trades"] == 1 + 1
    assert exchange.reads["open_orders"] == 1 + 1 + 1


@pytest.mark.anyio
async def test_pass_baseline_counts_recently_filled_orders_as_old(tmp_path: Path) -> None:
    exchange = FakeExchange()
    exchange.move("AAA_USDT", Decimal(2))
    exchange._execute(
        f"/positions/{exchange.positions_by_symbol['AAA_USDT'].id}/close", {}
    )  # a closing order nobody knows the id of, filled a moment ago
    desired = {"AAA_USDT": Decimal(-2)}
    plan = await planned(exchange, desired)
    exchange.faults[0] = "lose"  # the sell never arrives
    report = await run_apply(
        plan, client=exchange, desired=desired, read_snapshot=read_fake,
        planner=target_planner, lock=user_lock(), state_dir=tmp_path, settle_config=QUICK,
    )  # fmt: skip
    assert [r.outcome for r in report.results] == ["settled_not_executed", "accepted"]
    assert report.converged, report.table()
    assert signed(exchange.positions_by_symbol["AAA_USDT"]) == Decimal(-2)


@pytest.mark.anyio
async def test_a_failed_reduction_holds_back_the_rest_of_each_held_symbol(tmp_path: Path) -> None:
    """The gate holds BBB's open back; BBB's top-up after it was planned on the position the
    open would have made, so it must not be sent either (it would land on another)."""
    exchange = FakeExchange()
    exchange.move("BBB_USDT", Decimal(-3))  # a short the planned flip would have replaced
    top_up = position_action(
        "adjust_margin", "BBB_USDT", POSITION_ID_PLACEHOLDER, {"mode": "add", "amount": 5}
    ).model_copy(update={"phase": Phase.INCREASE, "risk": "reduce"})
    actions = [
        order_action("AAA_USDT", "sell", Decimal(1), Phase.REDUCE, reduce_only=True),
        order_action("BBB_USDT", "buy", Decimal(4), Phase.INCREASE),
        top_up,
    ]
    exchange.faults[0] = "reject:INSUFFICIENT_MARGIN"
    desired = {"AAA_USDT": Decimal(0), "BBB_USDT": Decimal(1)}
    report = await run(exchange, make_plan(actions), desired, tmp_path, max_passes=1)
    outcomes = [(r.action.symbol, r.action.kind, r.outcome) for r in report.passes[0].results]
    assert outcomes == [
        ("AAA_USDT", "place_order", "rejected"),
        ("BBB_USDT", "place_order", "not_sent"),
        ("BBB_USDT", "adjust_margin", "not_sent"),
    ]
    assert report.passes[0].results[1].detail.startswith("held back: place_order on AAA_USDT")
    sent = [(body or {}).get("symbol", path) for _, path, body in exchange.writes()]
    # pass 1 sent only the refused reduction; BBB's calls came in the next pass, in order
    assert sent[0] == "AAA_USDT" and sent[1] == "BBB_USDT"
