"""The Socket.IO stream: authenticated connections, per-user rooms, events after commits."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
import socketio

from reconciler import jsonnum
from reconciler.sandbox.app import API_PREFIX
from reconciler.sandbox.stream import NAMESPACE
from tests.conftest import RunningSandbox
from tests.signing import signed_headers

TIMEOUT_S = 10


class Listener:
    """A Socket.IO client whose events land in one queue, in arrival order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for name in ("orderUpdate", "positionUpdate", "accountData", "marketData"):
            self.client.on(name, self._sink(name), namespace=NAMESPACE)

    def _sink(self, name: str) -> Any:
        async def handler(payload: Any) -> None:
            await self.events.put((name, payload))

        return handler

    async def connect(self, base_url: str, key: str, secret: str) -> None:
        await self.client.connect(
            base_url,
            namespaces=[NAMESPACE],
            auth={"apiKeyId": key, "apiKeySecret": secret},
            transports=["websocket"],
            wait_timeout=TIMEOUT_S,
        )

    async def next(self, name: str, match: Any = lambda payload: True) -> Any:
        """The first `name` event satisfying `match`; others are skipped."""
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                event, payload = await self.events.get()
                if event == name and match(payload):
                    return payload


async def post_signed(base_url: str, path: str, body: Any) -> Any:
    raw = jsonnum.dumps(body)
    headers = signed_headers("POST", API_PREFIX + path, raw, "demo-key", "demo-secret")
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(API_PREFIX + path, content=raw, headers=headers)
    payload = jsonnum.loads(response.content)
    assert response.status_code == 200, payload
    return payload["data"]


def test_order_update_after_rest_order(sandbox: RunningSandbox) -> None:
    async def scenario() -> None:
        listener = Listener()
        await listener.connect(sandbox.base_url, "demo-key", "demo-secret")
        try:
            order = await post_signed(
                sandbox.base_url,
                "/order",
                {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                 "size": Decimal("0.01"), "price": 45000},
            )  # fmt: skip
            update = await listener.next("orderUpdate", lambda p: p["id"] == order["id"])
            assert update["size"] == Decimal("0.01") and update["userId"] == "demo"
            account = await listener.next("accountData")
            assert account["userId"] == "demo"
        finally:
            await listener.client.disconnect()

    asyncio.run(scenario())


def test_users_only_hear_their_own_orders(sandbox: RunningSandbox) -> None:
    sandbox.create_account("erin")

    async def scenario() -> None:
        erin, demo = Listener(), Listener()
        await erin.connect(sandbox.base_url, "erin-key", "erin-secret")
        await demo.connect(sandbox.base_url, "demo-read", "demo-read-secret")
        try:
            await post_signed(
                sandbox.base_url,
                "/order",
                {"userId": "demo", "symbol": "ETH_USDT", "side": "buy", "orderType": "market",
                 "size": 1},
            )  # fmt: skip
            await demo.next("orderUpdate")
            # Everyone gets market data; erin's queue holds nothing private of demo's.
            await asyncio.to_thread(sandbox.set_prices, {"ETH_USDT": 2600})
            await erin.next(
                "marketData", lambda p: p["symbol"] == "ETH_USDT" and p["markPrice"] == 2600
            )
            while not erin.events.empty():
                name, payload = erin.events.get_nowait()
                assert name == "marketData" or payload.get("userId") == "erin", (name, payload)
        finally:
            await erin.client.disconnect()
            await demo.client.disconnect()

    asyncio.run(scenario())


def test_position_update_on_price_move(sandbox: RunningSandbox) -> None:
    async def scenario() -> None:
        listener = Listener()
        await listener.connect(sandbox.base_url, "demo-key", "demo-secret")
        try:
            await asyncio.to_thread(sandbox.set_prices, {"BTC_USDT": 45500})
            position = await listener.next("positionUpdate", lambda p: p["symbol"] == "BTC_USDT")
            assert position["markPrice"] == 45500
        finally:
            await listener.client.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "auth",
    [
        {"apiKeyId": "nobody", "apiKeySecret": "x"},
        {"apiKeyId": "demo-key", "apiKeySecret": "wrong"},
        {"apiKeyId": "demo-key"},
        None,
    ],
)
def test_bad_keys_are_refused(sandbox: RunningSandbox, auth: Any) -> None:
    async def scenario() -> None:
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                sandbox.base_url,
                namespaces=[NAMESPACE],
                auth=auth,
                transports=["websocket"],
                wait_timeout=TIMEOUT_S,
            )
        await client.disconnect()

    asyncio.run(scenario())


def test_the_engine_reads_snapshots_only_while_someone_listens(sandbox: RunningSandbox) -> None:
    exchange = sandbox.server.exchange

    async def scenario() -> None:
        assert exchange.listening() is False
        listener = Listener()
        await listener.connect(sandbox.base_url, "demo-key", "demo-secret")
        try:
            assert exchange.listening() is True
            await post_signed(
                sandbox.base_url,
                "/order",
                {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                 "size": Decimal("0.01"), "price": 45000},
            )  # fmt: skip
            account = await listener.next("accountData")
            assert account["userId"] == "demo"
        finally:
            await listener.client.disconnect()

    asyncio.run(scenario())
