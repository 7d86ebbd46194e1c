"""Drive the sandbox for the benchmarks: build an account once, then measure plan and apply.

Building a 500-symbol account takes thousands of signed calls, so each portfolio is built
once into a *template* database; every repetition then serves a fresh copy of that file on a
fresh server (fresh request log, rate-limit windows and replay cache). Repetitions therefore
start from byte-identical accounts without paying for the build again.

Calls are counted from the sandbox's own request log (`GET /_sandbox/requests`), never from
the client: the log is what the exchange would bill against the rate limit.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.portfolio import KEY_ID, KEY_SECRET, USER_ID, Portfolio
from reconciler import jsonnum
from reconciler.apply.engine import run_apply
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_ahead, read_snapshot
from reconciler.levret.settings import ClientSettings
from reconciler.model.plan import Plan
from reconciler.run.lock import account_lock
from reconciler.run.workflow import plan_account
from reconciler.sandbox.engine import Exchange
from reconciler.sandbox.server import SandboxServer

__all__ = [
    "DEFAULT_LIMIT",
    "LIFTED_LIMIT",
    "Control",
    "RunResult",
    "build_template",
    "client_settings",
    "copy_db",
    "measure_plan_apply",
    "serve",
]

DEFAULT_LIMIT = 1200
LIFTED_LIMIT = 1_000_000_000


class Control:
    """The sandbox's unsigned control API over HTTP, as any outside tool would call it."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        content = None if body is None else jsonnum.dumps(body)
        response = self._http.request(method, "/_sandbox/" + path, content=content)
        payload = jsonnum.loads(response.content)
        if response.status_code != 200 or not payload.get("success"):
            raise RuntimeError(f"control {method} {path}: {payload}")
        return payload.get("data")

    def requests(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.call("GET", "requests")
        return entries

    def clear_requests(self) -> None:
        self.call("DELETE", "requests")

    def close(self) -> None:
        self._http.close()


@contextmanager
def serve(db_path: Path, rate_limit: int) -> Iterator[tuple[SandboxServer, Control]]:
    """A sandbox on `db_path` (created and demo-seeded if new) with its control client."""
    server = SandboxServer(db_path, rate_limit=rate_limit).start()
    control = Control(server.base_url)
    try:
        yield server, control
    finally:
        control.close()
        server.stop()


def client_settings(api_url: str, rate_limit: int) -> ClientSettings:
    """The reconciler's client as the CLI builds it, with the budget under test."""
    return ClientSettings(
        api_key_id=KEY_ID,
        api_key_secret=KEY_SECRET,
        user_id=USER_ID,
        base_url=api_url,
        rate_limit_per_minute=rate_limit,
    )


def copy_db(template: Path, target: Path) -> None:
    """Copy a stopped sandbox's database (and any SQLite side files) to `target`."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))


# -- building the live account ----------------------------------------------------------------


def build_template(portfolio: Portfolio, db_path: Path) -> float:
    """Create the portfolio's symbols, funded account, positions and orders; return seconds."""
    started = time.perf_counter()
    with serve(db_path, LIFTED_LIMIT) as (server, control):
        control.call("POST", "symbols", {"symbols": [case.spec for case in portfolio.cases]})
        control.call(
            "POST",
            "accounts",
            {
                "userId": USER_ID,
                "apiKeyId": KEY_ID,
                "apiKeySecret": KEY_SECRET,
                "scopes": ["read", "trade"],
                "balance": portfolio.balance(),
            },
        )
        _place_live(portfolio, server.exchange)
        asyncio.run(_check_live(portfolio, client_settings(server.api_url, LIFTED_LIMIT)))
    return time.perf_counter() - started


def _place_live(portfolio: Portfolio, exchange: Exchange) -> None:
    """Positions and resting orders through the sandbox's trading engine, in process.

    The engine is what every signed `POST /order` runs (validation, margin, fills); calling it
    directly skips HTTP and signing, which would make the build of a 500-symbol account take
    minutes. Only the build does this: plan, apply and the baseline go over HTTP.
    """
    for case in portfolio.cases:
        position = case.position
        if position is not None:
            body: dict[str, Any] = {
                "userId": USER_ID,
                "symbol": case.symbol,
                "side": "buy" if position.side == "long" else "sell",
                "orderType": "market",
                "size": position.size,
                "leverage": position.leverage,
                "reduce_only": False,
            }
            if position.take_profit is not None:
                body["takeProfit"] = position.take_profit
            if position.stop_loss is not None:
                body["stopLoss"] = position.stop_loss
            exchange.place_order(USER_ID, body)
        for order in case.orders:
            exchange.place_order(
                USER_ID,
                {
                    "userId": USER_ID,
                    "symbol": case.symbol,
                    "side": order.side,
                    "orderType": "limit",
                    "size": order.size,
                    "price": order.price,
                    "leverage": order.leverage,
                    "reduce_only": False,
                },
            )
        exchange.drain_events()


async def _check_live(portfolio: Portfolio, settings: ClientSettings) -> None:
    """Read the built account back over the API: it must be exactly the generated one."""
    async with LevretClient(settings) as client:
        positions = {p.symbol: p for p in await client.positions()}
        orders = [o async for o in client.iter_open_orders()]
    expected_positions = {c.symbol for c in portfolio.cases if c.position is not None}
    if set(positions) != expected_positions or len(orders) != portfolio.live_orders:
        raise RuntimeError("the built account does not match the generated portfolio")


# -- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """One repetition: `reconciler plan` then `reconciler apply` on a fresh copy."""

    plan_s: float
    plan_reads: int
    plan_actions: int
    apply_s: float
    apply_reads: int
    apply_writes: int
    apply_429: int
    converged: bool

    @property
    def apply_calls(self) -> int:
        return self.apply_reads + self.apply_writes


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def measure_plan_apply(
    portfolio: Portfolio, template: Path, work: Path, *, rate_limit: int
) -> RunResult:
    """Plan and apply as the CLI does (one client each), counting calls from the request log."""
    db = work / f"run-{time.monotonic_ns()}.db"
    copy_db(template, db)
    with serve(db, rate_limit) as (server, control):
        settings = client_settings(server.api_url, rate_limit)
        run = plan_then_apply(settings, portfolio, work, control)
    plan, plan_s, plan_log, converged, apply_s, apply_log = run
    for path in work.glob(db.name + "*"):
        path.unlink()
    return RunResult(
        plan_s=plan_s,
        plan_reads=_count(plan_log, "GET"),
        plan_actions=len(plan.actions),
        apply_s=apply_s,
        apply_reads=_count(apply_log, "GET"),
        apply_writes=_count(apply_log, "POST"),
        apply_429=sum(1 for entry in apply_log + plan_log if entry["status"] == 429),
        converged=converged,
    )


PlanThenApply = tuple[Plan, float, list[dict[str, Any]], bool, float, list[dict[str, Any]]]


def plan_then_apply(
    settings: ClientSettings, portfolio: Portfolio, work: Path, control: Control
) -> PlanThenApply:
    """Plan, then apply, as the CLI does (one client each): (plan, its seconds, its request
    log, converged, apply's seconds, its request log)."""
    control.clear_requests()
    started = time.perf_counter()
    plan = asyncio.run(plan_account(settings, portfolio.desired(), now_ms=_now_ms()))
    plan_s = time.perf_counter() - started
    plan_log = control.requests()
    control.clear_requests()
    started = time.perf_counter()
    converged = asyncio.run(apply_as_cli(settings, plan, portfolio, work))
    apply_s = time.perf_counter() - started
    return plan, plan_s, plan_log, converged, apply_s, control.requests()


async def apply_as_cli(
    settings: ClientSettings, plan: Plan, portfolio: Portfolio, work: Path
) -> bool:
    """`workflow.apply_account` with its defaults (and no progress output)."""
    async with LevretClient(settings) as client:
        read_ahead(client, plan)
        report = await run_apply(
            plan,
            client=client,
            desired=portfolio.desired(),
            read_snapshot=read_snapshot,
            lock=account_lock(None, base_url="", user_id=plan.user_id),
            state_dir=work / "state",
        )
    return report.converged


def _count(log: list[dict[str, Any]], method: str) -> int:
    return sum(1 for entry in log if entry["method"] == method)
