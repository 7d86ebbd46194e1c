"""A fill that names no order (a liquidation, a position-close fill) is no reason to stop.

It once made a whole apply stop half way (exit 5): settlement and baselines asked the
exchange for the order of every recent fill. Now such fills are skipped there.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_apply import QUICK, FakeExchange, now_ms, order_action
from wire import wire_call

from reconciler.apply.settle import Baseline, settle
from reconciler.model.account import Trade
from reconciler.model.plan import Phase


def liquidation_fill(symbol: str) -> Trade:
    return Trade(
        id="liq-1", order_id=None, symbol=symbol, side="sell", size=Decimal(1),
        price=Decimal(100), timestamp=now_ms(),
    )  # fmt: skip


@pytest.mark.anyio
async def test_settle_skips_a_fill_without_order_that_came_after_the_baseline() -> None:
    exchange = FakeExchange()
    action = order_action("AAA_USDT", "buy", Decimal(1), Phase.INCREASE)
    sent_at = now_ms()
    exchange.trades.append(liquidation_fill("AAA_USDT"))  # after the baseline was taken
    exchange._place(wire_call(action).body or {})  # executed; its answer was lost
    result = await settle(
        exchange, action, action.intent, sent_at_ms=sent_at, baseline=Baseline(position=None),
        config=QUICK,
    )  # fmt: skip
    assert result.executed is True
