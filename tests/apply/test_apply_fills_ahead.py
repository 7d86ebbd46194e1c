"""The pass's read of recent fills is made while its first phases run, not by its first order.

Each test holds the pass's first call (a cancel) until the read of recent fills has been
made: an engine that read the fills only at its first order would never make it while the
cancel is held, and the guard's timeout would fail the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from reconciler.apply.engine import run_apply
from reconciler.apply.report import ApplyReport
from reconciler.levret.errors import ServerError
from reconciler.model.account import Trade
from reconciler.model.intents import CancelOrder
from reconciler.model.plan import Action, Phase
from tests.apply.test_apply import (
    QUICK,
    CountingExchange,
    FakeExchange,
    make_plan,
    order_action,
    read_fake,
    target_planner,
    user_lock,
)

GUARD_S = 10.0


class FillsWatch(CountingExchange):
    """Says when recent fills are read; the first `failures` reads fail."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.fills_read = anyio.Event()

    async def iter_user_trades(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Trade]:
        self._count("trades")
        self.fills_read.set()
        if self.failures:
            self.failures -= 1
            raise ServerError("unavailable", code="INTERNAL_ERROR", status=503)
        async for trade in FakeExchange.iter_user_trades(self, symbol, start_time=start_time):
            yield trade


async def cancel_then_order(exchange: FillsWatch, tmp_path: Path) -> ApplyReport:
    """A pass of one cancel (held until the fills are read) and then one limit order."""
    exchange._place(
        {"symbol": "CCC_USDT", "side": "buy", "orderType": "limit", "size": 1, "price": 90}
    )
    resting = next(iter(exchange.orders))
    snapshot = await read_fake(exchange, {})
    actions = [
        Action(
            intent=CancelOrder(symbol="CCC_USDT", order_id=resting),
            phase=Phase.CANCEL_ORDERS,
            reason="not wanted",
        ),
        order_action(
            "AAA_USDT", "buy", Decimal(1), Phase.PLACE_ORDERS, order_type="limit",
            price=Decimal(80),
        ),
    ]  # fmt: skip
    exchange.faults[0] = "block"
    exchange.reads.clear()
    report: ApplyReport | None = None

    async def release_once_the_fills_are_read() -> None:
        try:
            with anyio.fail_after(GUARD_S):
                await exchange.entered.wait()
                await exchange.fills_read.wait()
            assert [path for _, path, _ in exchange.writes()] == ["/order/cancel"]
        finally:
            exchange.release.set()  # the held send is shielded: only its release ends the apply

    async def apply() -> None:
        nonlocal report
        report = await run_apply(
            make_plan(actions, snapshot), client=exchange, desired={}, read_snapshot=read_fake,
            planner=target_planner, lock=user_lock(), state_dir=tmp_path, settle_config=QUICK,
        )  # fmt: skip

    async with anyio.create_task_group() as group:
        group.start_soon(release_once_the_fills_are_read)
        group.start_soon(apply)
    assert report is not None
    return report


@pytest.mark.anyio
async def test_the_fills_are_read_while_the_first_phase_runs(tmp_path: Path) -> None:
    exchange = FillsWatch()
    report = await cancel_then_order(exchange, tmp_path)
    assert [r.outcome for r in report.results] == ["accepted", "accepted"]
    assert exchange.reads["trades"] == 1  # one read for the pass, none at the order


@pytest.mark.anyio
async def test_a_failed_read_ahead_is_made_again_by_the_first_order(tmp_path: Path) -> None:
    exchange = FillsWatch(failures=1)
    report = await cancel_then_order(exchange, tmp_path)
    assert [r.outcome for r in report.results] == ["accepted", "accepted"]
    assert exchange.reads["trades"] == 2


@pytest.mark.anyio
async def test_an_order_whose_fills_cannot_be_read_is_not_sent(tmp_path: Path) -> None:
    exchange = FillsWatch(failures=2)
    report = await cancel_then_order(exchange, tmp_path)
    cancel, order = report.passes[0].results
    assert cancel.outcome == "accepted"
    assert order.outcome == "not_sent" and "could not read the state first" in order.detail
    assert [path for _, path, _ in exchange.writes()] == ["/order/cancel"]
