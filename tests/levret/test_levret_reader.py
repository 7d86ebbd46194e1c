"""The account read against the real sandbox: what each read asks the exchange for.

The sandbox's request log is the witness: a read that needs no book top sends no orderbook
request, and apply's read before its first call is such a read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply.engine import run_apply
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_ahead, read_snapshot
from reconciler.model.desired import loads
from reconciler.plan import plan as make_plan
from reconciler.run.lock import account_lock
from tests.levret.test_levret_sandbox_e2e import demo_settings

# A resting buy far below the demo BTC mark (45000): planning it reads the BTC book top.
DESIRED = loads(
    "version: 1\n"
    "account: {user_id: demo}\n"
    "symbols:\n"
    "  BTC_USDT:\n"
    "    orders_mode: additive\n"
    "    orders: [{side: buy, price: 30000, size: 0.001}]\n"
)


def _books_asked(sandbox: Any) -> list[str]:
    return [
        r["path"] for r in sandbox.requests() if r["path"].startswith("/api/v1/market/orderbook")
    ]


@pytest.mark.anyio
async def test_a_read_without_book_tops_sends_no_orderbook_request(sandbox: Any) -> None:
    async with LevretClient(demo_settings(sandbox)) as client:
        planned_from = await read_snapshot(client, DESIRED)
        assert "BTC_USDT" in planned_from.books
        assert len(_books_asked(sandbox)) == 1
        checked = await read_snapshot(client, DESIRED, symbols=["BTC_USDT"], books=False)
    assert checked.books == {}
    assert checked.mark("BTC_USDT") == planned_from.mark("BTC_USDT")  # marks are still read
    assert len(_books_asked(sandbox)) == 1


@pytest.mark.anyio
async def test_apply_checks_its_plan_without_reading_a_book(sandbox: Any, tmp_path: Path) -> None:
    settings = demo_settings(sandbox)
    async with LevretClient(settings) as client:
        planned = make_plan(DESIRED, await read_snapshot(client, DESIRED))
    assert [action.kind for action in planned.actions] == ["place_order"]
    assert planned.read_hint is not None and "BTC_USDT" in planned.read_hint.books
    before = len(_books_asked(sandbox))
    async with LevretClient(settings) as client:
        read_ahead(client, planned)
        report = await run_apply(
            planned.model_copy(update={"created_at_ms": time.time_ns() // 1_000_000}),
            client=client,
            desired=DESIRED,
            read_snapshot=read_snapshot,
            lock=account_lock(None, base_url=settings.base_url, user_id="demo"),
            state_dir=tmp_path,
        )
    assert report.converged
    # The read before the first call and its read-ahead ask for no book top; the
    # verification re-plans, but with the order resting there is none left to place.
    assert len(_books_asked(sandbox)) == before
