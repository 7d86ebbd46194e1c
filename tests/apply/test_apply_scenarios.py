"""Every golden planner scenario, replayed end to end against a real sandbox server.

The scenario's `live.json` is built in a fresh sandbox through the trading engine (positions
opened by real orders, margins adjusted, orders rested), so the account is one the exchange
could really hold. Then: the live plan equals the golden `plan.json` call for call (ids
translated), apply sends exactly those calls in that order (the sandbox's request log), and
the account ends matching the file (planning again gives nothing to do).
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr
from wire import wire_call

from reconciler import jsonnum
from reconciler.apply.engine import run_apply
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_snapshot
from reconciler.levret.requests import calls_for
from reconciler.levret.settings import ClientSettings
from reconciler.model.desired import DesiredState, load
from reconciler.model.plan import Plan
from reconciler.plan import plan
from reconciler.render.plan import load_plan
from reconciler.run.lock import account_lock
from reconciler.sandbox.seed import DEMO_SYMBOLS
from reconciler.sandbox.wirestyle import WIRE_STYLES

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
USER, KEY, SECRET = "demo", "scenario-key", "scenario-secret"
DEFAULT_MARKS = {spec["symbol"]: Decimal(str(spec["markPrice"])) for spec in DEMO_SYMBOLS}


def realise(exchange: Any, live: dict[str, Any]) -> dict[str, str]:
    """Build `live` in the engine; return engine id -> golden id for orders and positions."""
    marks = {symbol: Decimal(str(price)) for symbol, price in live["marks"].items()}
    specs = []
    for spec in live["specs"]:
        symbol = spec["symbol"]
        specs.append({**spec, "markPrice": marks.get(symbol, DEFAULT_MARKS[symbol])})
    exchange.add_symbols(specs)
    balance = live["equity"] if live.get("equity") is not None else Decimal(1_000_000)
    exchange.create_account(USER, KEY, SECRET, ["read", "trade"], balance)
    ids: dict[str, str] = {}
    for position in live["positions"]:
        symbol, size = position["symbol"], Decimal(str(position["size"]))
        entry, leverage = Decimal(str(position["entryPrice"])), position["leverage"]
        exchange.set_prices({symbol: entry})
        body: dict[str, Any] = {
            "userId": USER,
            "symbol": symbol,
            "side": "buy" if position["side"] == "long" else "sell",
            "orderType": "market",
            "size": size,
            "leverage": leverage,
        }
        for field, key in (("takeProfitPrice", "takeProfit"), ("stopLossPrice", "stopLoss")):
            if position.get(field) is not None:
                body[key] = Decimal(str(position[field]))
        exchange.place_order(USER, body)
        (opened,) = exchange.positions(USER, symbol)
        ids[opened["id"]] = position["id"]
        extra = Decimal(str(position["margin"])) - opened["margin"]
        if extra:
            mode = "add" if extra > 0 else "reduce"
            exchange.adjust_margin(USER, opened["id"], {"mode": mode, "amount": abs(extra)})
        exchange.set_prices({symbol: Decimal(str(position["markPrice"]))})
    for order in live["open_orders"]:
        body = {
            key: order[key]
            for key in ("userId", "symbol", "side", "orderType", "leverage", "reduce_only")
        }
        body.update(size=Decimal(str(order["size"])), price=Decimal(str(order["price"])))
        placed = exchange.place_order(USER, body)
        ids[placed["id"]] = order["id"]
    if live.get("equity") is not None:
        top_up = Decimal(str(live["equity"])) - exchange.account_overview(USER)["equity"]
        if top_up > 0:
            exchange.deposit(USER, top_up)
    return ids


def translated(result: Plan, ids: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """Each call as (kind, symbol, method, path + body) with the golden file's ids."""

    def golden_id(match: re.Match[str]) -> str:
        return match.group(1) + ids.get(match.group(2), match.group(2)) + match.group(3)

    calls = []
    for action in result.actions:
        body = jsonnum.dumps(wire_call(action).body).decode()
        body = re.sub(r'("orderId":")([^"]+)(")', golden_id, body)
        path = re.sub(r"(/positions/)([^/]+)(/)", golden_id, wire_call(action).path)
        calls.append((action.kind, action.symbol, wire_call(action).method, f"{path} {body}"))
    return calls


def settings_for(api_url: str) -> ClientSettings:
    return ClientSettings(
        api_key_id=KEY,
        api_key_secret=SecretStr(SECRET),
        user_id=USER,
        base_url=api_url,
        rate_limit_per_minute=60_000,
    )


async def plan_live(api_url: str, desired: DesiredState) -> Plan:
    async with LevretClient(settings_for(api_url)) as client:
        return plan(desired, await read_snapshot(client, desired))


@pytest.mark.parametrize("wire_style", WIRE_STYLES)
@pytest.mark.parametrize("name", sorted(path.name for path in SCENARIOS.iterdir()))
def test_scenario_applies_exactly_its_golden_calls(
    name: str, wire_style: str, sandbox_factory: Any, tmp_path: Path
) -> None:
    """Against every response style the sandbox can answer in (`--wire-style`)."""
    folder = SCENARIOS / name
    desired = load(folder / "desired.yaml")
    golden = load_plan((folder / "plan.json").read_bytes(), calls_for=calls_for)
    sandbox = sandbox_factory(seed=False, rate_limit=100_000, wire_style=wire_style)
    ids = realise(sandbox.exchange, jsonnum.loads((folder / "live.json").read_bytes()))

    live_plan = anyio.run(plan_live, sandbox.api_url, desired)
    assert translated(live_plan, ids) == translated(golden, {})
    assert live_plan.violations == golden.violations
    if live_plan.violations or not live_plan.actions:
        return

    sandbox.clear_requests()

    async def apply() -> Any:
        async with LevretClient(settings_for(sandbox.api_url)) as client:
            return await run_apply(
                live_plan.model_copy(update={"created_at_ms": _now_ms()}),
                client=client,
                desired=desired,
                read_snapshot=read_snapshot,
                lock=account_lock(
                    None,
                    base_url="",
                    user_id=USER,
                ),
                state_dir=tmp_path / "state",
                parallelism=1,
            )

    report = anyio.run(apply)
    assert report.converged, report.table()
    sent = [(entry["method"], entry["path"]) for entry in sandbox.requests()]
    writes = [call for call in sent if call[0] == "POST"]
    expected = [("POST", "/api/v1" + wire_call(action).path) for action in live_plan.actions]
    opened = {
        position["symbol"]: position["id"] for position in sandbox.exchange.positions(USER, None)
    }
    expected = [
        (method, path.replace("{position_id}", opened.get(_symbol_of(live_plan, i), "?")))
        for i, (method, path) in enumerate(expected)
    ]
    assert writes == expected
    assert all(entry["status"] == 200 for entry in sandbox.requests())
    assert anyio.run(plan_live, sandbox.api_url, desired).actions == ()


def _symbol_of(result: Plan, index: int) -> str:
    return result.actions[index].symbol


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
