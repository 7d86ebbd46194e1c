"""Apply end to end: the real client, reader and planner against a real sandbox server."""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningSandbox, SandboxFactory

from reconciler.apply.journal import read_journal
from reconciler.apply.report import ApplyReport
from reconciler.apply.settle import SettleConfig
from reconciler.defaults import DEFAULT_PARALLELISM
from reconciler.errors import LockHeld, PreconditionFailed
from reconciler.levret.client import LevretClient
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import Position
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.run.lock import account_lock
from tests.reliability.reliability_support import apply as apply_as_tested
from tests.reliability.reliability_support import fresh_plan

FAST_SETTLE = SettleConfig(
    visibility_window_s=0.02, max_reads=3, clock_skew_ms=2_000, visibility_timeout_s=0.5
)
MARKS = {"BTC_USDT": Decimal(45000), "ETH_USDT": Decimal(2500), "SOL_USDT": Decimal(100)}
STEPS = {"BTC_USDT": Decimal("0.001"), "ETH_USDT": Decimal("0.01"), "SOL_USDT": Decimal("0.1")}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@asynccontextmanager
async def connect(
    sandbox: RunningSandbox, user: str, key: str, secret: str
) -> AsyncIterator[LevretClient]:
    settings = ClientSettings(
        api_key_id=key,
        api_key_secret=secret,
        user_id=user,
        base_url=sandbox.api_url,
        rate_limit_per_minute=1_000_000,
        backoff_initial=0.005,
        backoff_max=0.02,
    )
    async with LevretClient(settings) as client:
        yield client


def desired_state(symbols: dict[str, dict[str, Any]]) -> DesiredState:
    return DesiredState.model_validate(
        {"version": 1, "symbols": {s: {"position": p} for s, p in symbols.items()}}
    )


async def apply(
    client: LevretClient, desired: DesiredState, state_dir: Path, plan: Plan | None = None
) -> ApplyReport:
    """Apply as the reliability tests do, with this module's settling and the default width."""
    return await apply_as_tested(
        client, desired, state_dir, plan=plan, settle=FAST_SETTLE, parallelism=DEFAULT_PARALLELISM
    )


def signed(position: Position | None) -> Decimal:
    if position is None:
        return Decimal(0)
    return position.size if position.side == "long" else -position.size


def writes(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    return [entry for entry in sandbox.requests() if entry["method"] == "POST"]


@pytest.mark.anyio
async def test_reductions_first_free_the_margin_the_increases_need(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sandbox.create_account("small", "small-key", "small-secret", balance=1000)
    async with connect(sandbox, "small", "small-key", "small-secret") as client:
        await client.create_order("BTC_USDT", "buy", "market", "0.02", leverage=1)  # 900 margin
        desired = desired_state(
            {
                "BTC_USDT": {"side": "flat"},
                "ETH_USDT": {"side": "long", "size": Decimal("0.3"), "leverage": 1},  # 750
            }
        )
        overview = await client.account_overview()
        assert overview.available_balance < Decimal(750)  # the increase alone cannot be paid
        sandbox.clear_requests()
        report = await apply(client, desired, tmp_path)
        assert report.converged, report.table()
        positions = {p.symbol: p for p in await client.positions()}
    assert set(positions) == {"ETH_USDT"} and positions["ETH_USDT"].size == Decimal("0.3")
    paths = [entry["path"] for entry in writes(sandbox)]
    close = next(i for i, p in enumerate(paths) if p.endswith("/close"))
    order = next(i for i, p in enumerate(paths) if p == "/api/v1/order")
    assert close < order
    assert all(entry["code"] is None for entry in writes(sandbox))


def random_target(rng: random.Random, symbol: str) -> dict[str, Any]:
    side = rng.choice(["long", "long", "short", "short", "flat"])
    if side == "flat":
        return {"side": "flat"}
    step = STEPS[symbol]
    size = step * rng.randint(1, 40) * 10
    leverage = rng.choice([2, 5, 10])
    target: dict[str, Any] = {"side": side, "size": size, "leverage": leverage}
    mark = MARKS[symbol]
    if rng.random() < 0.4:
        far, near = (Decimal("1.5"), Decimal("0.5"))
        target["take_profit"] = (mark * (far if side == "long" else near)).quantize(Decimal(1))
    if rng.random() < 0.3:
        target["margin"] = (mark * size / leverage * 2).quantize(Decimal("0.01"))
    return target


async def new_fills(
    client: LevretClient, since_ms: int, seen: set[str]
) -> list[tuple[str, Decimal]]:
    fills = []
    async for trade in client.iter_user_trades(start_time=since_ms):
        if trade.id not in seen:
            seen.add(trade.id)
            fills.append((trade.symbol, trade.size if trade.side == "buy" else -trade.size))
    return fills


@pytest.mark.anyio
async def test_random_rebalances_converge_through_dropped_answers(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(rate_limit=1_000_000)
    sandbox.create_account("chaos", "chaos-key", "chaos-secret", balance=10_000_000)
    sandbox.set_faults({"seed": 1, "drop_after_commit": 0.3})
    rng = random.Random(20250101)
    seen_fills: set[str] = set()
    unknown_settled = 0
    async with connect(sandbox, "chaos", "chaos-key", "chaos-secret") as client:
        for round_number in range(50):
            symbols = rng.sample(sorted(MARKS), rng.randint(1, 3))
            desired = desired_state({s: random_target(rng, s) for s in symbols})
            before = {p.symbol: signed(p) for p in await client.positions()}
            started = now_ms()
            sandbox.clear_requests()
            report = await apply(client, desired, tmp_path)
            assert report.converged, f"round {round_number}:\n{report.table()}"
            assert len(report.passes) <= 4
            unknown_settled += sum(r.outcome.startswith("settled") for r in report.results)

            # No position ever passed its target in the direction of travel.
            targets = {
                s: Decimal(0)
                if t["side"] == "flat"
                else (t["size"] if t["side"] == "long" else -t["size"])
                for s, t in ((s, desired.symbols[s].position.model_dump()) for s in symbols)  # type: ignore[union-attr]
            }
            running = dict(before)
            for symbol, delta in await new_fills(client, started - 2_000, seen_fills):
                assert symbol in targets, f"round {round_number}: fill on untouched {symbol}"
                start, target = before.get(symbol, Decimal(0)), targets[symbol]
                running[symbol] = running.get(symbol, Decimal(0)) + delta
                if target > start:
                    assert running[symbol] <= target, f"round {round_number}: {symbol} overshot"
                else:
                    assert running[symbol] >= target, f"round {round_number}: {symbol} overshot"
            for symbol, target in targets.items():
                assert running.get(symbol, Decimal(0)) == target

            # No order was duplicated: each planned order went out exactly once.
            journal = read_journal(report.journal_path)  # type: ignore[arg-type]
            planned_orders = [
                r for r in journal if r["type"] == "intent" and r["request"]["path"] == "/order"
            ]
            sent_orders = [e for e in writes(sandbox) if e["path"] == "/api/v1/order"]
            assert len(sent_orders) == len(planned_orders), f"round {round_number}"
            per_pass: dict[tuple[int, str], int] = {}
            for record in planned_orders:
                key = (record["pass_number"], record["symbol"])
                per_pass[key] = per_pass.get(key, 0) + 1
            assert all(count == 1 for count in per_pass.values()), f"round {round_number}"
    assert unknown_settled > 10  # the faults really struck and were settled


@pytest.mark.anyio
@pytest.mark.parametrize("cause", ["account changed", "too old", "mark moved"])
async def test_stale_saved_plan_is_refused_with_nothing_sent(
    sandbox: RunningSandbox, tmp_path: Path, cause: str
) -> None:
    desired = desired_state(
        {
            "BTC_USDT": {"side": "long", "size": Decimal("0.5"), "leverage": 10},
            "SOL_USDT": {"side": "short", "size": Decimal(5), "leverage": 5},
        }
    )
    async with connect(sandbox, "demo", "demo-key", "demo-secret") as client:
        plan = await fresh_plan(client, desired)
        if cause == "account changed":
            await client.create_order("BTC_USDT", "buy", "market", "0.01")
        elif cause == "too old":
            plan = plan.model_copy(update={"created_at_ms": now_ms() - 16 * 60 * 1000})
        else:
            sandbox.set_prices({"SOL_USDT": 103})
        sandbox.clear_requests()
        with pytest.raises(PreconditionFailed) as refused:
            await apply(client, desired, tmp_path, plan)
    assert refused.value.exit_code == 3
    assert writes(sandbox) == []
    (journal,) = (tmp_path / "journal").iterdir()
    assert [r["type"] for r in read_journal(journal)] == ["plan", "precondition", "end"]


@pytest.mark.anyio
async def test_second_apply_fails_at_once_naming_the_holder(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    desired = desired_state({"BTC_USDT": {"side": "long", "size": Decimal("0.3")}})
    async with connect(sandbox, "demo", "demo-key", "demo-secret") as client:
        plan = await fresh_plan(client, desired)
        sandbox.clear_requests()
        with account_lock(None, base_url="", user_id="demo"), pytest.raises(LockHeld) as refused:
            started = time.monotonic()
            await apply(client, desired, tmp_path, plan)
        assert time.monotonic() - started < 1.0
        assert refused.value.exit_code == 6
        assert f"pid {os.getpid()}" in str(refused.value)
        assert sandbox.requests() == []
        report = await apply(client, desired, tmp_path, plan)
    assert report.converged


@pytest.mark.anyio
async def test_journal_is_ordered_and_never_holds_the_secret(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    secret = "jrnl-Secret-7f3c9a1e-DO-NOT-LEAK"
    sandbox = sandbox_factory(rate_limit=1_000_000)
    sandbox.create_account("audit", "audit-key", secret, balance=1_000_000)
    sandbox.set_faults({"seed": 3, "drop_after_commit": 0.5})
    desired = desired_state(
        {
            "BTC_USDT": {"side": "long", "size": Decimal("0.2"), "leverage": 5},
            "ETH_USDT": {"side": "short", "size": Decimal(2), "leverage": 5,
                         "margin": Decimal(2500)},
            "SOL_USDT": {"side": "long", "size": Decimal(30), "take_profit": Decimal(150)},
        }
    )  # fmt: skip
    state_dir = tmp_path / "state"  # the sandbox's own database lives in tmp_path too
    async with connect(sandbox, "audit", "audit-key", secret) as client:
        report = await apply(client, desired, state_dir)
    assert report.converged, report.table()
    assert report.journal_path is not None
    text = report.journal_path.read_text(encoding="utf-8")
    assert secret not in text and "X-API-KEY" not in text and "signature" not in text.lower()
    records = read_journal(report.journal_path)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    types = [r["type"] for r in records]
    assert types[:2] == ["plan", "precondition"] and types[-1] == "end"
    assert types[-2] == "verification" and records[-2]["converged"] is True

    # Symbols run concurrently, so records interleave; each call's own records are in order.
    def later(position: int, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        key = (record["pass_number"], record["index"])
        return next(
            r
            for r in records[position + 1 :]
            if r["type"] == kind and (r["pass_number"], r["index"]) == key
        )

    for position, record in enumerate(records):
        if record["type"] == "intent":
            assert set(record["request"]) == {"method", "path", "body"}
            assert "{position_id}" not in record["request"]["path"]
            assert later(position, "result", record)["symbol"] == record["symbol"]
        if record["type"] == "result" and record["outcome"] == "unknown":
            assert later(position, "settlement", record)["outcome"].startswith("settled")
    assert any(r["type"] == "settlement" for r in records)
    for leftover in state_dir.rglob("*"):
        if leftover.is_file():
            assert secret not in leftover.read_text(encoding="utf-8", errors="replace")
