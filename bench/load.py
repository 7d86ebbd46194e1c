"""Sandbox under load: many concurrent signed clients, then every account audited to the cent.

The server runs in its own process (as `reconciler sandbox serve` would), so the load
generator's event loop does not share its interpreter. Each of `--clients` clients gets its own
account and, for `--seconds`, places market and resting orders, cancels, changes leverage
and reads, while one more task moves the marks (filling resting orders and realising PnL).
Afterwards every account is audited from the API and from the sandbox's database:

- `wallet_balance = deposits - Σ fill fees + Σ fill realised PnL - Σ liquidation losses`,
  each sum taken from the fills and the ledger, not from the account row;
- `availableBalance + positionMargin + order_margin = walletBalance`;
- `positionMargin` is the sum of the margins of `GET /positions`.

    python bench/load.py --clients 50 --seconds 30

It prints throughput, latency percentiles, the refusal codes seen and the audit's findings
(there must be none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from pydantic import SecretStr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler import jsonnum
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import LevretError
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import OrderSide

__all__ = ["LoadReport", "run_load"]

SYMBOLS = {
    "BTC_USDT": (Decimal(45000), Decimal("0.001"), Decimal("0.1")),
    "ETH_USDT": (Decimal(2500), Decimal("0.01"), Decimal("0.01")),
    "SOL_USDT": (Decimal(100), Decimal("0.1"), Decimal("0.01")),
}
DEPOSIT = Decimal(1_000_000)


def _serve(db_path: str, pipe: Connection) -> None:
    """Child process: serve the sandbox until the parent says stop."""
    from reconciler.sandbox.server import SandboxServer

    server = SandboxServer(db_path, rate_limit=100_000_000, rate_window=60.0).start()
    pipe.send(server.base_url)
    pipe.recv()
    server.stop()
    pipe.send("stopped")


@dataclass
class LoadReport:
    clients: int
    seconds: float
    requests: int
    throughput_per_s: float
    latency_ms: dict[str, float]
    outcomes: dict[str, int]
    accounts_audited: int
    findings: list[str] = field(default_factory=list)


async def _client_loop(
    base_url: str, number: int, until: float, latencies: list[float], outcomes: Counter[str]
) -> None:
    user = f"load{number}"
    settings = ClientSettings(
        api_key_id=f"{user}-key",
        api_key_secret=SecretStr(f"{user}-secret"),
        user_id=user,
        base_url=base_url + "/api/v1",
        rate_limit_per_minute=100_000_000,
        backoff_initial=0.01,
        backoff_max=0.05,
        read_timeout=30,
    )
    rng = random.Random(number)
    async with LevretClient(settings) as client:
        while time.monotonic() < until:
            symbol = rng.choice(sorted(SYMBOLS))
            mark, step, tick = SYMBOLS[symbol]
            size = step * rng.randint(1, 20)
            pick = rng.random()
            started = time.perf_counter()
            try:
                if pick < 0.3:
                    market_side: OrderSide = "buy" if rng.random() < 0.5 else "sell"
                    await client.create_order(symbol, market_side, "market", size, leverage=5)
                elif pick < 0.5:
                    side: OrderSide = "buy" if rng.random() < 0.5 else "sell"
                    away = Decimal(1) + (Decimal(rng.randint(-3, 3)) / 100)
                    price = (mark * away / tick).to_integral_value() * tick
                    await client.create_order(symbol, side, "limit", size, price=price)
                elif pick < 0.6:
                    orders = await client.open_orders(symbol, page_size=20)
                    if orders.items:
                        await client.cancel_order(rng.choice(orders.items).id)
                elif pick < 0.65:
                    held = await client.positions(symbol)
                    if held:
                        await client.set_leverage(held[0].id, rng.choice([3, 5, 10]))
                elif pick < 0.8:
                    await client.positions()
                else:
                    await client.account_overview()
                outcomes["ok"] += 1
            except LevretError as error:
                outcomes[error.code or type(error).__name__] += 1
            latencies.append((time.perf_counter() - started) * 1000)


async def _market(base_url: str, until: float) -> None:
    """Move the marks a little, often: resting orders fill, PnL is realised."""
    rng = random.Random(0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while time.monotonic() < until:
            prices = {
                symbol: (
                    mark * (1 + Decimal(rng.randint(-300, 300)) / 10_000) / tick
                ).to_integral_value()
                * tick
                for symbol, (mark, _, tick) in SYMBOLS.items()
            }
            await http.post("/_sandbox/prices", content=jsonnum.dumps(prices))
            await asyncio.sleep(0.2)  # pacing of the simulated market, not synchronisation


async def _drive(base_url: str, clients: int, seconds: float) -> tuple[list[float], Counter[str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for number in range(clients):
            body = {
                "userId": f"load{number}",
                "apiKeyId": f"load{number}-key",
                "apiKeySecret": f"load{number}-secret",
                "balance": DEPOSIT,
            }
            response = await http.post("/_sandbox/accounts", content=jsonnum.dumps(body))
            response.raise_for_status()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(
        _market(base_url, until),
        *(_client_loop(base_url, n, until, latencies, outcomes) for n in range(clients)),
    )
    return latencies, outcomes


async def _audit_api(base_url: str, clients: int) -> dict[str, dict[str, Decimal]]:
    """Each account's overview, and the sum of its positions' margins, read over the API."""
    seen: dict[str, dict[str, Decimal]] = {}
    for number in range(clients):
        user = f"load{number}"
        settings = ClientSettings(
            api_key_id=f"{user}-key",
            api_key_secret=SecretStr(f"{user}-secret"),
            user_id=user,
            base_url=base_url + "/api/v1",
            rate_limit_per_minute=100_000_000,
        )
        async with LevretClient(settings) as client:
            overview = await client.account_overview()
            positions = await client.positions()
        seen[user] = {
            "wallet": overview.wallet_balance,
            "available": overview.available_balance,
            "position_margin": overview.position_margin or Decimal(0),
            "order_margin": overview.order_margin or Decimal(0),
            "positions_margin_sum": sum((p.margin for p in positions), Decimal(0)),
        }
    return seen


def _audit(db_path: str, api: dict[str, dict[str, Decimal]]) -> list[str]:
    findings: list[str] = []
    with sqlite3.connect(db_path) as db:
        for user, seen in api.items():
            deposits = sum(
                (Decimal(a) for (a,) in db.execute(
                    "SELECT amount FROM ledger WHERE user_id = ? AND type = 'deposit'", (user,)
                )),
                Decimal(0),
            )  # fmt: skip
            fees = Decimal(0)
            pnl = Decimal(0)
            for fee, realised in db.execute(
                "SELECT fee, realized_pnl FROM fills WHERE user_id = ?", (user,)
            ):
                fees += Decimal(fee)
                pnl += Decimal(realised)
            losses = sum(
                (Decimal(a) for (a,) in db.execute(
                    "SELECT amount FROM ledger WHERE user_id = ? AND type = 'liquidation'", (user,)
                )),
                Decimal(0),
            )  # fmt: skip
            expected = deposits - fees + pnl + losses
            if seen["wallet"] != expected:
                findings.append(f"{user}: wallet {seen['wallet']} != {expected} from fills/ledger")
            parts = seen["available"] + seen["position_margin"] + seen["order_margin"]
            if parts != seen["wallet"]:
                findings.append(f"{user}: available + margins {parts} != wallet {seen['wallet']}")
            if seen["positions_margin_sum"] != seen["position_margin"]:
                findings.append(
                    f"{user}: positions' margins {seen['positions_margin_sum']}"
                    f" != positionMargin {seen['position_margin']}"
                )
    return findings


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def run_load(clients: int = 50, seconds: float = 30.0) -> LoadReport:
    with tempfile.TemporaryDirectory(prefix="load-") as scratch:
        db_path = str(Path(scratch) / "sandbox.db")
        parent, child = multiprocessing.get_context("spawn").Pipe()
        server = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(db_path, child), daemon=True
        )
        server.start()
        try:
            base_url = parent.recv()
            started = time.monotonic()
            latencies, outcomes = asyncio.run(_drive(base_url, clients, seconds))
            elapsed = time.monotonic() - started
            api = asyncio.run(_audit_api(base_url, clients))
        finally:
            parent.send("stop")
            parent.recv()
            server.join(timeout=30)
        findings = _audit(db_path, api)
    return LoadReport(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=len(latencies),
        throughput_per_s=round(len(latencies) / elapsed, 1),
        latency_ms={
            "p50": _percentile(latencies, 0.50),
            "p90": _percentile(latencies, 0.90),
            "p99": _percentile(latencies, 0.99),
            "max": _percentile(latencies, 1.0),
        },
        outcomes=dict(outcomes.most_common()),
        accounts_audited=len(api),
        findings=findings,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    report = run_load(args.clients, args.seconds)
    print(json.dumps(asdict(report), indent=2))
    return 0 if not report.findings else 1


if __name__ == "__main__":
    sys.exit(main())
