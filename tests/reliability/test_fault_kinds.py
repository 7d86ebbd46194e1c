"""One deterministic regression test per sandbox fault kind, through the real client and apply.

Each test sets one seeded fault, runs apply (or the client) against a real sandbox server and
checks the ground truth from the sandbox's own tables: every order executed exactly once, no
position passed its target, and the account converged or stopped safely. `drop_after_commit`
and `partial_fills` are covered by tests/apply/test_apply_sandbox.py and tests/sandbox/.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from conftest import RunningSandbox, SandboxFactory
from reliability_support import (
    FAST_SETTLE,
    apply,
    connect,
    desired,
    fresh_plan,
    last_id,
    orders_since,
    overshoots,
    position,
    rows,
)

from reconciler.apply.engine import apply_plan
from reconciler.apply.journal import Journal, read_journal
from reconciler.apply.settle import SettleConfig
from reconciler.errors import PreconditionFailed
from reconciler.levret.errors import NotFound, UnstableListing
from reconciler.levret.reader import read_snapshot
from reconciler.sandbox.faults import liquidate_position

LONG_BTC = {"BTC_USDT": {"position": {"side": "long", "size": Decimal("0.5"), "leverage": 10}}}


@pytest.fixture
def fast(sandbox_factory: SandboxFactory) -> RunningSandbox:
    return sandbox_factory(rate_limit=1_000_000)


def order_posts(sandbox: RunningSandbox) -> list[dict[str, object]]:
    return [e for e in sandbox.requests() if e["method"] == "POST" and e["path"] == "/api/v1/order"]


@pytest.mark.anyio
async def test_drop_before_never_executes_and_is_settled_not_executed(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    fast.set_faults({"seed": 1, "drop_before": 1})
    mark = last_id(fast, "orders")
    async with connect(fast) as client:
        report = await apply(client, desired(LONG_BTC), tmp_path)
    assert not report.converged and report.exit_code == 5
    assert orders_since(fast, "demo", mark) == []  # nothing executed, ever
    outcomes = {r.outcome for r in report.results if r.action.kind == "place_order"}
    assert outcomes == {"settled_not_executed"}  # and never resent blind within a pass
    assert len(order_posts(fast)) == len(report.passes)
    assert all(e["status"] == 0 for e in order_posts(fast))  # the connection was cut


@pytest.mark.anyio
async def test_garbage_after_commit_is_settled_executed_once(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    fast.set_faults({"seed": 3, "garbage_after_commit": 1})
    mark, fills = last_id(fast, "orders"), last_id(fast, "fills")
    async with connect(fast) as client:
        report = await apply(client, desired(LONG_BTC), tmp_path)
    assert report.converged, report.table()
    placed = [r for r in report.results if r.action.kind == "place_order"]
    assert [r.outcome for r in placed] == ["settled_executed"]
    assert len(orders_since(fast, "demo", mark)) == 1
    log = fast.control("GET", "faults/log")
    assert {e["kind"] for e in log} <= {"garbage_500", "truncated_200"} and log
    assert overshoots(fast, "demo", "BTC_USDT", Decimal("0.2"), Decimal("0.5"), fills) == []


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [5, 6])  # one 500 with HTML, one 200 cut mid-JSON
async def test_each_kind_of_garbage_answer(fast: RunningSandbox, seed: int) -> None:
    fast.set_faults({"seed": seed, "garbage_after_commit": 1})
    async with connect(fast) as client:
        with pytest.raises(Exception) as raised:
            await client.create_order("BTC_USDT", "buy", "limit", "0.01", price=40000)
    assert type(raised.value).__name__ == "OutcomeUnknown"
    (entry,) = fast.control("GET", "faults/log")
    assert entry["kind"] in ("garbage_500", "truncated_200")


@pytest.mark.anyio
async def test_invisible_order_within_the_window_is_found_not_resent(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    """Answer lost and the order hidden from reads for 150 ms; the window is 400 ms."""
    fast.set_faults({"seed": 1, "invisible_ms": 150, "drop_after_commit": 1})
    mark = last_id(fast, "orders")
    wanted = desired(
        {"SOL_USDT": {"orders": [{"side": "buy", "price": 80, "size": 1}]}}  # one new rest
    )
    settle = SettleConfig(visibility_window_s=0.4, max_reads=3, clock_skew_ms=5_000)
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path, settle=settle)
    new = [o for o in orders_since(fast, "demo", mark) if o["symbol"] == "SOL_USDT"]
    assert [o["price"] for o in new] == ["80"], report.table()
    placed = [
        r for r in report.results if r.action.kind == "place_order" and r.outcome != "not_sent"
    ]
    assert [r.outcome for r in placed] == ["settled_executed"], report.table()
    assert placed[0].settlement is not None and placed[0].settlement.reads >= 2


@pytest.mark.anyio
async def test_invisible_position_after_an_accepted_order_is_not_doubled(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    """The verification read right after an accepted order must not see 'nothing happened'."""
    fast.set_faults({"seed": 1, "invisible_ms": 200})
    fills = last_id(fast, "fills")
    wanted = desired({"ETH_USDT": {"position": {"side": "long", "size": 1, "leverage": 5}}})
    settle = SettleConfig(visibility_window_s=0.3, max_reads=3, clock_skew_ms=5_000)
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path, settle=settle)
    assert position(fast, "demo", "ETH_USDT") == Decimal(1), report.table()
    assert overshoots(fast, "demo", "ETH_USDT", Decimal(-3), Decimal(1), fills) == []
    assert report.converged


@pytest.mark.anyio
async def test_instant_fills_never_show_an_open_order_and_never_double(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    fast.set_faults({"seed": 1, "instant_fills": True})
    mark = last_id(fast, "orders")
    wanted = desired({"SOL_USDT": {"orders": [{"side": "buy", "price": 80, "size": 1}]}})
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path)
        assert [o async for o in client.iter_open_orders("SOL_USDT")] == []
    placed = orders_since(fast, "demo", mark)
    # One placement per pass at most: each filled at once, so the next pass placed it again.
    assert len(placed) == len(report.passes) and all(o["status"] == "filled" for o in placed)
    assert not report.converged and report.exit_code == 5


@pytest.mark.anyio
async def test_fill_racing_a_cancel_is_re_planned_and_converges(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    """The resting buy fills just before its cancel: the cancel answers ORDER_NOT_OPEN."""
    fast.set_faults({"seed": 1, "fill_before_cancel": 1})
    wanted = desired(
        {"BTC_USDT": {"position": {"side": "long", "size": Decimal("0.2")}, "orders": []}}
    )
    fills = last_id(fast, "fills")
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path)
    assert any(r.code == "ORDER_NOT_OPEN" for r in report.results)
    # The fill moved the position (0.2 -> 0.3); the next pass reduced it back, once.
    assert report.converged and "BTC_USDT" not in report.excluded, report.table()
    assert position(fast, "demo", "BTC_USDT") == Decimal("0.2")
    assert overshoots(fast, "demo", "BTC_USDT", Decimal("0.3"), Decimal("0.2"), fills + 1) == []


@pytest.mark.anyio
async def test_cancel_of_an_already_filled_order_is_refused_by_the_exchange(
    fast: RunningSandbox,
) -> None:
    async with connect(fast) as client:
        (order,) = [o async for o in client.iter_open_orders("BTC_USDT")]
        fast.set_prices({"BTC_USDT": 42000})  # the resting buy at 42000 fills
        with pytest.raises(Exception) as raised:
            await client.cancel_order(order.id)
    assert getattr(raised.value, "code", None) == "ORDER_NOT_OPEN"


@pytest.mark.anyio
async def test_429_storm_with_headers_is_ridden_out_without_a_duplicate(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    fast.set_faults({"seed": 2, "storm_429": Decimal("0.3"), "storm_length": 2})
    mark = last_id(fast, "orders")
    async with connect(fast) as client:
        report = await apply(client, desired(LONG_BTC), tmp_path)
    assert report.converged, report.table()
    throttled = [e for e in fast.requests() if e["status"] == 429]
    assert throttled and all(e["code"] == "RATE_LIMITED" for e in throttled)
    executed = [e for e in order_posts(fast) if e["status"] == 200]
    assert len(executed) == len(orders_since(fast, "demo", mark)) == 1


def test_429_storm_answers_carry_retry_after_and_limit_headers(fast: RunningSandbox) -> None:
    from signing import signed_request

    fast.set_faults({"seed": 1, "storm_429": 1, "storm_length": 2})
    response = signed_request(fast.base_url, "GET", "/api/v1/positions")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in response.headers and "X-RateLimit-Limit" in response.headers


@pytest.mark.anyio
@pytest.mark.parametrize("skew_ms", [-40_000, 40_000])
async def test_clock_skew_both_ways_converges(
    fast: RunningSandbox, tmp_path: Path, skew_ms: int
) -> None:
    fast.set_faults({"seed": 1, "clock_skew_ms": skew_ms, "drop_after_commit": Decimal("0.5")})
    mark = last_id(fast, "orders")
    async with connect(fast) as client:
        report = await apply(client, desired(LONG_BTC), tmp_path)
    assert report.converged, report.table()
    assert len(orders_since(fast, "demo", mark)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("jump_ms", [-90_000, 90_000])
async def test_clock_jump_mid_run_converges_without_duplicates(
    fast: RunningSandbox, tmp_path: Path, jump_ms: int
) -> None:
    fast.set_faults({"seed": 1, "clock_jump_ms": jump_ms, "clock_jump_after": 4})
    mark, fills = last_id(fast, "orders"), last_id(fast, "fills")
    wanted = desired(
        {
            "BTC_USDT": {"position": {"side": "long", "size": Decimal("0.5"), "leverage": 10}},
            "SOL_USDT": {"position": {"side": "short", "size": 5, "leverage": 5}},
        }
    )
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path)
    assert report.converged, report.table()
    assert [e["kind"] for e in fast.control("GET", "faults/log")] == ["clock_jump"]
    assert len(orders_since(fast, "demo", mark)) == 2
    assert overshoots(fast, "demo", "SOL_USDT", Decimal(0), Decimal(-5), fills) == []


def rest_doge_ladder(sandbox: RunningSandbox, count: int) -> None:
    """Enough resting orders (well over one page of 100) for a walk to cross pages."""
    for i in range(count):
        sandbox.exchange.place_order(
            "demo",
            {"userId": "demo", "symbol": "DOGE_USDT", "side": "buy", "orderType": "limit",
             "size": 10, "price": Decimal("0.05") + Decimal(i) / 100_000},
        )  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("seed", "chance"),
    [
        (1, "0.5"),
        (3, "0.5"),
    ],
)
async def test_pagination_shifting_between_page_reads_loses_no_order(
    fast: RunningSandbox, seed: int, chance: str
) -> None:
    async with connect(fast) as client:
        rest_doge_ladder(fast, 130)
        expected = {
            o["id"] for o in fast.exchange.open_orders("demo", None, 1, 100, None, None)["items"]
        }
        expected |= {
            o["id"] for o in fast.exchange.open_orders("demo", None, 2, 100, None, None)["items"]
        }
        fast.set_faults({"seed": seed, "page_shift": Decimal(chance)})
        seen = [o.id async for o in client.iter_open_orders()]
    assert len(seen) == len(set(seen)) == len(expected) == 133
    assert set(seen) == expected
    assert any(e["kind"] == "page_shift" for e in fast.control("GET", "faults/log"))


@pytest.mark.anyio
async def test_a_listing_that_never_settles_fails_rather_than_miss_an_order(
    fast: RunningSandbox,
) -> None:
    async with connect(fast) as client:
        rest_doge_ladder(fast, 130)
        fast.set_faults({"seed": 1, "page_shift": Decimal(1)})
        with pytest.raises(UnstableListing):
            _ = [o.id async for o in client.iter_open_orders()]


@pytest.mark.anyio
@pytest.mark.parametrize(("bps", "refused"), [(50, False), (150, True)])
async def test_mark_jump_between_plan_and_apply(
    fast: RunningSandbox, tmp_path: Path, bps: int, refused: bool
) -> None:
    wanted = desired(LONG_BTC)
    async with connect(fast) as client:
        plan = await fresh_plan(client, wanted)
        fast.set_prices({"BTC_USDT": Decimal(45000) * (1 + Decimal(bps) / 10_000)})
        fast.clear_requests()
        if refused:
            with pytest.raises(PreconditionFailed):
                await apply(client, wanted, tmp_path, plan=plan)
            assert [e for e in fast.requests() if e["method"] == "POST"] == []
        else:
            report = await apply(client, wanted, tmp_path, plan=plan)
            assert report.converged, report.table()


@pytest.mark.anyio
async def test_mark_jumps_during_apply_never_overshoot(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    fast.set_faults({"seed": 4, "mark_jump": 1, "mark_jump_bps": 300})
    fills = last_id(fast, "fills")
    wanted = desired({"ETH_USDT": {"position": {"side": "long", "size": 2, "leverage": 5}}})
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path)
    assert report.converged, report.table()
    assert any(e["kind"] == "mark_jump" for e in fast.control("GET", "faults/log"))
    assert overshoots(fast, "demo", "ETH_USDT", Decimal(-3), Decimal(2), fills) == []


@pytest.mark.anyio
async def test_external_liquidation_after_the_plan_stops_the_flip_order(
    fast: RunningSandbox, tmp_path: Path
) -> None:
    """A flip sized from a long that was liquidated meanwhile would open a short too big."""
    wanted = desired({"BTC_USDT": {"position": {"side": "short", "size": Decimal("0.1")}}})
    fills = last_id(fast, "fills")
    async with connect(fast) as client:
        plan = await fresh_plan(client, wanted)
        assert liquidate_position(fast.exchange, "demo", "BTC_USDT") is not None
        with Journal(tmp_path / "journal.jsonl") as journal:
            report = await apply_plan(
                plan,
                client=client,
                desired=wanted,
                read_snapshot=read_snapshot,
                journal=journal,
                settle_config=FAST_SETTLE,
            )
    assert report.converged, report.table()
    first = report.passes[0].results
    assert any(r.outcome == "not_sent" and "sized from" in r.detail for r in first)
    assert position(fast, "demo", "BTC_USDT") == Decimal("-0.1")
    assert overshoots(fast, "demo", "BTC_USDT", Decimal(0), Decimal("-0.1"), fills) == []


@pytest.mark.anyio
async def test_liquidation_fault_is_logged_with_its_fill_watermark(fast: RunningSandbox) -> None:
    fast.set_faults({"seed": 1, "liquidate": 1})
    async with connect(fast) as client:
        (held,) = await client.positions("BTC_USDT")
        with pytest.raises(NotFound):  # a mutation on BTC: the position is liquidated first
            await client.set_tpsl(held.id, take_profit=50000)
    (entry,) = fast.control("GET", "faults/log")
    assert entry["kind"] == "liquidate" and entry["symbol"] == "BTC_USDT"
    ledger = rows(fast, "SELECT type FROM ledger WHERE user_id = 'demo' AND type = 'liquidation'")
    assert len(ledger) == 1


@pytest.mark.anyio
async def test_journal_intents_match_the_request_log(fast: RunningSandbox, tmp_path: Path) -> None:
    fast.set_faults({"seed": 9, "drop_after_commit": Decimal("0.5"), "fail_before": Decimal("0.3")})
    wanted = desired(
        {
            "BTC_USDT": {"position": {"side": "long", "size": Decimal("0.4")}, "orders": []},
            "ETH_USDT": {"position": {"side": "flat"}},
        }
    )
    async with connect(fast) as client:
        report = await apply(client, wanted, tmp_path)
    journal = read_journal(report.journal_path)  # type: ignore[arg-type]
    intents = {("POST", "/api/v1" + r["request"]["path"]) for r in journal if r["type"] == "intent"}
    served = {(e["method"], e["path"]) for e in fast.requests() if e["method"] == "POST"}
    assert served == intents
