"""Helpers the reliability tests share: a fast client, apply against a real sandbox, and the
ground-truth reads (orders and fills straight from the sandbox's tables)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from conftest import RunningSandbox
from pydantic import SecretStr

from reconciler import plan as planner
from reconciler.apply.engine import run_apply
from reconciler.apply.report import ApplyReport
from reconciler.apply.settle import SettleConfig
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_snapshot
from reconciler.levret.settings import ClientSettings
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.run.lock import account_lock

FAST_SETTLE = SettleConfig(
    visibility_window_s=0.05, max_reads=4, clock_skew_ms=5_000, visibility_timeout_s=0.5
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def settings(
    sandbox: RunningSandbox, user: str = "demo", secret: str | None = None
) -> ClientSettings:
    """Pacing and backoff lifted: the sandbox's rate limit is what these tests exercise."""
    return ClientSettings(
        api_key_id=f"{user}-key",
        api_key_secret=SecretStr(secret or f"{user}-secret"),
        user_id=user,
        base_url=sandbox.api_url,
        rate_limit_per_minute=1_000_000,
        backoff_initial=0.002,
        backoff_max=0.01,
    )


@asynccontextmanager
async def connect(sandbox: RunningSandbox, user: str = "demo") -> AsyncIterator[LevretClient]:
    async with LevretClient(settings(sandbox, user)) as client:
        yield client


def desired(symbols: dict[str, dict[str, Any]], user: str = "demo") -> DesiredState:
    return DesiredState.model_validate(
        {"version": 1, "account": {"user_id": user}, "symbols": symbols}
    )


async def fresh_plan(client: LevretClient, wanted: DesiredState) -> Plan:
    plan = planner.plan(wanted, await read_snapshot(client, wanted))
    return plan.model_copy(update={"created_at_ms": now_ms()})


async def apply(
    client: LevretClient,
    wanted: DesiredState,
    state_dir: Path,
    *,
    plan: Plan | None = None,
    settle: SettleConfig = FAST_SETTLE,
    parallelism: int = 4,
) -> ApplyReport:
    return await run_apply(
        plan if plan is not None else await fresh_plan(client, wanted),
        client=client,
        desired=wanted,
        read_snapshot=read_snapshot,
        lock=account_lock(
            None,
            base_url="",
            user_id=client.user_id,
        ),
        state_dir=state_dir,
        settle_config=settle,
        parallelism=parallelism,
        max_passes=3,
    )


def rows(sandbox: RunningSandbox, sql: str, *parameters: Any) -> list[dict[str, Any]]:
    """The sandbox's own tables: what really happened, whatever any client believes."""
    with sandbox.exchange._unit() as session:
        return [dict(row) for row in session.execute(sql, parameters).fetchall()]


def last_id(sandbox: RunningSandbox, table: str) -> int:
    return int(rows(sandbox, f"SELECT COALESCE(MAX(id), 0) AS n FROM {table}")[0]["n"])


def orders_since(sandbox: RunningSandbox, user: str, after_id: int) -> list[dict[str, Any]]:
    return rows(
        sandbox, "SELECT * FROM orders WHERE user_id = ? AND id > ? ORDER BY id", user, after_id
    )


def position(sandbox: RunningSandbox, user: str, symbol: str) -> Decimal:
    """Signed size of the user's position (0 when flat)."""
    found = sandbox.exchange.positions(user, symbol)
    if not found:
        return Decimal(0)
    size = Decimal(found[0]["size"])
    return size if found[0]["side"] == "long" else -size


def overshoots(
    sandbox: RunningSandbox, user: str, symbol: str, start: Decimal, target: Decimal, after: int
) -> list[str]:
    """Replay the market fills since `after`: none may leave the position past the target."""
    fills = rows(
        sandbox,
        "SELECT f.id, f.side, f.size, o.order_type FROM fills f JOIN orders o ON o.id = f.order_id"
        " WHERE f.user_id = ? AND f.symbol = ? AND f.id > ? ORDER BY f.id",
        user,
        symbol,
        after,
    )
    running, bad = start, []
    for fill in fills:
        size = Decimal(fill["size"])
        running += size if fill["side"] == "buy" else -size
        if fill["order_type"] != "market":
            continue
        if (fill["side"] == "buy" and running > target) or (
            fill["side"] == "sell" and running < target
        ):
            bad.append(f"fill {fill['id']} left {symbol} at {running}, target {target}")
    return bad
