"""While the passes run, what the process held before them is out of the collector's walks."""

from __future__ import annotations

import gc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply.engine import apply_plan
from reconciler.apply.journal import Journal
from reconciler.model.plan import Phase
from reconciler.model.snapshot import Snapshot
from tests.apply.test_apply import (
    QUICK,
    FakeExchange,
    make_plan,
    order_action,
    run,
    target_planner,
)


class FreezeWatch(FakeExchange):
    """Notes how many objects are frozen when each call is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen_at_send: list[int] = []

    async def send(self, method: str, path: str, body: Any = None) -> Any:
        self.frozen_at_send.append(gc.get_freeze_count())
        return await super().send(method, path, body)


@pytest.mark.anyio
async def test_the_heap_is_frozen_during_the_passes_and_handed_back(tmp_path: Path) -> None:
    gc.unfreeze()
    exchange = FreezeWatch()
    plan = make_plan([order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE)])
    report = await run(exchange, plan, {"AAA_USDT": Decimal(1)}, tmp_path)
    assert report.converged
    assert exchange.frozen_at_send and min(exchange.frozen_at_send) > 0
    assert gc.get_freeze_count() == 0


@pytest.mark.anyio
async def test_a_failed_apply_hands_the_heap_back(tmp_path: Path) -> None:
    gc.unfreeze()

    async def broken_read(client: FakeExchange, desired: Any, **_: Any) -> Snapshot:
        raise RuntimeError("a bug in the reader")

    plan = make_plan([order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE)])
    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(RuntimeError, match="bug"):
        await apply_plan(
            plan, client=FreezeWatch(), desired={"AAA_USDT": Decimal(1)},
            read_snapshot=broken_read, planner=target_planner, journal=journal,
            settle_config=QUICK,
        )  # fmt: skip
    assert gc.get_freeze_count() == 0
