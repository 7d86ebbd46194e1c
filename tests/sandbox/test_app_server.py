"""The server as users run it: restarts on one database, the CLI command, concurrent clients."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from reconciler import jsonnum
from reconciler.cli.root import cli
from reconciler.sandbox.app import API_PREFIX
from reconciler.sandbox.server import SandboxServer
from tests.conftest import SandboxFactory
from tests.signing import data_of, signed_headers, signed_request

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW = API_PREFIX + "/wallet/account-overview"


def snapshot(base_url: str) -> dict[str, Any]:
    def read(target: str) -> Any:
        return data_of(signed_request(base_url, "GET", API_PREFIX + target))

    return {
        "overview": read("/wallet/account-overview"),
        "positions": read("/positions"),
        "orders": read("/order/open"),
        "trades": read("/trade/user/demo?pageSize=100"),
    }


def test_restart_on_the_same_database_keeps_the_state(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    db = tmp_path / "kept.db"
    first = sandbox_factory(db_path=db)
    order = {"userId": "demo", "symbol": "SOL_USDT", "side": "sell", "orderType": "market",
             "size": 5, "leverage": 3}  # fmt: skip
    data_of(signed_request(first.base_url, "POST", API_PREFIX + "/order", order))
    first.create_account("frank", balance=777)
    before = snapshot(first.base_url)
    first.close()

    second = sandbox_factory(db_path=db)
    assert second.port != 0
    after = snapshot(second.base_url)
    # Marks and unrealized PnL are live values; everything stored must be identical.
    assert after == before
    frank = signed_request(second.base_url, "GET", OVERVIEW, key="frank-key", secret="frank-secret")
    assert data_of(frank)["walletBalance"] == 777


def test_in_memory_server_as_context_manager() -> None:
    with SandboxServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.api_url == server.base_url + "/api/v1"
        response = httpx.get(server.api_url + "/market/supported-symbols")
        assert response.status_code == 200
    assert server.exchange is not None


def _start_cli(db: Path, cwd: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from reconciler.cli.root import main; main()",
         "sandbox", "serve", "--port", "0", "--db", str(db), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )  # fmt: skip
    assert process.stdout is not None
    first_line = process.stdout.readline().strip()  # printed once the server accepts requests
    prefix = "Sandbox listening on "
    assert first_line.startswith(prefix), (first_line, process.stderr and process.stderr.read())
    return process, first_line[len(prefix) :]


def _stop_cli(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out


def test_cli_serve_with_the_realistic_profile(tmp_path: Path) -> None:
    process, url = _start_cli(tmp_path / "sandbox.db", tmp_path, "--profile", "realistic")
    try:
        assert process.stdout is not None
        announced = [process.stdout.readline().strip() for _ in range(2)]
        profile = httpx.get(url + "/_sandbox/profile").json()["data"]
        faults = httpx.get(url + "/_sandbox/faults").json()["data"]
    finally:
        _stop_cli(process)
    assert profile["name"] == "realistic" and faults["read_lag_ms"] == 1500
    assert "Profile: realistic" in announced


def test_cli_serve_on_an_ephemeral_port_and_restart(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sandbox.db"
    process, url = _start_cli(db, tmp_path)
    try:
        order = {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                 "size": Decimal("0.01"), "price": 41234}  # fmt: skip
        placed = data_of(signed_request(url, "POST", API_PREFIX + "/order", order))
    finally:
        out = _stop_cli(process)
    assert "Sandbox stopped." in out

    process, url = _start_cli(db, tmp_path)
    try:
        again = data_of(signed_request(url, "GET", f"{API_PREFIX}/order/{placed['id']}"))
        assert again["price"] == 41234 and again["status"] == "open"
    finally:
        _stop_cli(process)


def test_cli_refuses_a_remote_host_without_allow_remote() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--host", "0.0.0.0", "--db", ":memory:"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


def test_fifty_concurrent_clients_add_up(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory()
    users = [f"trader{i}" for i in range(5)]
    for user in users:
        sandbox.create_account(user, balance=50_000)

    def order(index: int) -> tuple[str, dict[str, Any]]:
        user = users[index % len(users)]
        symbol = ("BTC_USDT", "ETH_USDT")[index % 2]
        size = Decimal("0.01") * (1 + index % 3) if symbol == "BTC_USDT" else Decimal("0.1")
        side = ("buy", "sell", "buy")[index % 3]
        body: dict[str, Any] = {"userId": user, "symbol": symbol, "side": side, "size": size}
        if index % 4 == 3:
            mark = 45000 if symbol == "BTC_USDT" else 2500
            body.update(
                orderType="limit", price=mark - 100 if body["side"] == "buy" else mark + 100
            )
        else:
            body.update(orderType="market", leverage=5)
        return user, body

    async def place(client: httpx.AsyncClient, index: int) -> dict[str, Any]:
        user, body = order(index)
        raw = jsonnum.dumps(body)
        headers = signed_headers(
            "POST", API_PREFIX + "/order", raw, f"{user}-key", f"{user}-secret"
        )
        response = await client.post(API_PREFIX + "/order", content=raw, headers=headers)
        payload = jsonnum.loads(response.content)
        assert response.status_code == 200, payload
        data: dict[str, Any] = payload["data"]
        return data

    async def move_prices(client: httpx.AsyncClient, step: int) -> None:
        body = {"BTC_USDT": 45000 + 50 * step, "ETH_USDT": 2500 - 5 * step}
        response = await client.post("/_sandbox/prices", content=jsonnum.dumps(body))
        assert response.status_code == 200

    async def storm() -> list[dict[str, Any]]:
        clients = [
            httpx.AsyncClient(base_url=sandbox.base_url, timeout=60, verify=False)
            for _ in range(50)
        ]
        try:
            orders = asyncio.gather(*(place(clients[i], i) for i in range(50)))
            moves = asyncio.gather(*(move_prices(clients[i], i - 46) for i in range(47, 50)))
            placed, _ = await asyncio.gather(orders, moves)
            return list(placed)
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))

    placed = asyncio.run(storm())
    assert len({o["id"] for o in placed}) == 50

    for user in users:

        def read(target: str, user: str = user) -> Any:
            response = signed_request(
                sandbox.base_url, "GET", API_PREFIX + target, b"", f"{user}-key", f"{user}-secret"
            )
            return data_of(response)

        overview = read("/wallet/account-overview")
        positions = read("/positions")
        trades = read(f"/trade/user/{user}?pageSize=100")["items"]
        open_orders = read("/order/open?pageSize=100")["items"]
        mine = [o for o in placed if o["userId"] == user]
        assert len(mine) == 10

        assert overview["deposits"] == 50_000
        wallet = overview["deposits"] - overview["totalFees"] + overview["realizedPnl"]
        assert overview["walletBalance"] == wallet
        assert overview["availableBalance"] == (
            wallet - overview["positionMargin"] - overview["orderMargin"]
        )
        assert overview["positionMargin"] == sum((p["margin"] for p in positions), Decimal(0))
        assert overview["totalFees"] == sum((t["fee"] for t in trades), Decimal(0))
        assert overview["realizedPnl"] == sum((t["realizedPnl"] for t in trades), Decimal(0))
        assert overview["availableBalance"] >= 0
        if not open_orders:
            assert overview["orderMargin"] == 0

        net: dict[str, Decimal] = defaultdict(Decimal)
        for trade in trades:
            net[trade["symbol"]] += trade["size"] if trade["side"] == "buy" else -trade["size"]
        held = {p["symbol"]: p["size"] if p["side"] == "long" else -p["size"] for p in positions}
        assert held == {symbol: size for symbol, size in net.items() if size != 0}

        filled: dict[str, Decimal] = defaultdict(Decimal)
        for trade in trades:
            filled[trade["orderId"]] += trade["size"]
        for placed_order in mine:
            current = read(f"/order/{placed_order['id']}")
            assert current["filledSize"] == filled.get(placed_order["id"], Decimal(0))

        history = read("/wallet/balance-history?days=1")
        assert history[-1]["balance"] == overview["walletBalance"]
