"""Read lag (`read_lag_ms`): private reads trail the writes, as a third-party client sees them.

Every request here is signed by hand (`tests/signing.py`) against a real sandbox server on
loopback; the lag is long enough (2 s) that the reads right after the writes certainly fall
inside it, and the catch-up is polled with a bound, never slept for.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

from reconciler.sandbox.app import API_PREFIX
from reconciler.sandbox.seed import DEMO_SYMBOLS
from reconciler.sandbox.store import Store
from tests.conftest import RunningSandbox
from tests.sandbox.test_app_stream import Listener
from tests.signing import data_of, expect_error, signed_request

LAG_MS = 2_000


def get(sandbox: RunningSandbox, path: str) -> Any:
    return data_of(signed_request(sandbox.base_url, "GET", API_PREFIX + path))


def post(sandbox: RunningSandbox, path: str, body: Any) -> Any:
    return data_of(signed_request(sandbox.base_url, "POST", API_PREFIX + path, body))


def account_view(sandbox: RunningSandbox) -> dict[str, Any]:
    """What a client reading every private endpoint once sees."""
    return {
        "positions": {p["symbol"]: p["size"] for p in get(sandbox, "/positions")},
        "open": sorted(o["id"] for o in get(sandbox, "/order/open?pageSize=100")["items"]),
        "fills": get(sandbox, "/trade/user/demo?pageSize=100")["total"],
        "wallet": get(sandbox, "/wallet/account-overview")["walletBalance"],
        "ledger": len(get(sandbox, "/wallet/balance-history")),
    }


def test_reads_show_the_account_as_it_was_until_the_lag_has_passed(
    sandbox: RunningSandbox,
) -> None:
    before = account_view(sandbox)
    resting = sorted(get(sandbox, "/order/open")["items"], key=lambda o: o["price"])
    old_order = resting[0]["id"]  # SOL buy at 85
    sandbox.set_faults({"read_lag_ms": LAG_MS})
    assert sandbox.control("GET", "faults")["read_lag_ms"] == LAG_MS
    # The catch-up below polls as fast as loopback answers: a quick machine would spend the
    # default window inside the lag, and the test is of the lag, not of the rate limit.
    sandbox.set_rate_limit(100_000, 60)

    written = time.monotonic()
    opened = post(sandbox, "/order", {"symbol": "SOL_USDT", "side": "buy",
                                      "orderType": "market", "size": 2})  # fmt: skip
    placed = post(sandbox, "/order", {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                                      "size": Decimal("0.01"), "price": 40000})  # fmt: skip
    post(sandbox, "/order/cancel", {"orderId": old_order})
    post(sandbox, "/positions/" + get_live_position_id(sandbox, "ETH_USDT") + "/close", {})

    # Within the lag: new records missing, changed ones old, gone ones still there.
    lagged_positions = get(sandbox, "/positions")
    assert account_view(sandbox) == before
    expect_error(
        signed_request(sandbox.base_url, "GET", f"{API_PREFIX}/order/{placed['id']}"),
        404,
        "NOT_FOUND",
    )
    assert get(sandbox, f"/order/{old_order}")["status"] == "open"
    expect_error(
        signed_request(sandbox.base_url, "GET", f"{API_PREFIX}/trade/order/{opened['id']}"),
        404,
        "NOT_FOUND",
    )
    # Writes act on the live state: the cancelled order cannot be cancelled again.
    expect_error(
        signed_request(sandbox.base_url, "POST", API_PREFIX + "/order/cancel",
                       {"orderId": old_order}),
        409,
        "ORDER_NOT_OPEN",
    )  # fmt: skip

    # Then the writes appear, in their order, none sooner than the lag.
    deadline = written + 15
    while (positions := get(sandbox, "/positions")) == lagged_positions:
        assert time.monotonic() < deadline, "the replica never caught up"
    assert time.monotonic() - written >= LAG_MS / 1000 - 0.05
    shown = {p["symbol"]: p["size"] for p in positions}
    assert shown["SOL_USDT"] == 2 and "ETH_USDT" in shown  # the first write shows first
    final = {"BTC_USDT": Decimal("0.2"), "SOL_USDT": Decimal(2)}
    while (now := account_view(sandbox))["positions"] != final:
        assert time.monotonic() < deadline, "the replica never caught up"
    assert placed["id"] in now["open"] and old_order not in now["open"]
    assert now["fills"] == before["fills"] + 2
    assert get(sandbox, f"/order/{old_order}")["status"] == "cancelled"

    # Public reads and turning the lag off are live at once.
    sandbox.set_faults({})
    assert account_view(sandbox) == now


def get_live_position_id(sandbox: RunningSandbox, symbol: str) -> str:
    for position in sandbox.exchange.positions("demo", symbol):
        return str(position["id"])
    raise AssertionError(f"no {symbol} position")


def test_turning_lag_on_never_hides_what_was_visible(sandbox: RunningSandbox) -> None:
    placed = post(sandbox, "/order", {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                                      "size": Decimal("0.01"), "price": 40000})  # fmt: skip
    sandbox.set_faults({"read_lag_ms": LAG_MS})
    assert get(sandbox, f"/order/{placed['id']}")["status"] == "open"


@pytest.mark.anyio
async def test_the_stream_is_not_delayed(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"read_lag_ms": 30_000})
    listener = Listener()
    await listener.connect(sandbox.base_url, "demo-key", "demo-secret")
    try:
        body = {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                "size": Decimal("0.01"), "price": 40000}  # fmt: skip
        placed = await asyncio.to_thread(post, sandbox, "/order", body)
        update = await listener.next("orderUpdate", lambda p: p["id"] == placed["id"])
        assert update["status"] == "open"
        expect_error(
            signed_request(sandbox.base_url, "GET", f"{API_PREFIX}/order/{placed['id']}"),
            404,
            "NOT_FOUND",
        )
    finally:
        await listener.client.disconnect()


def test_no_copy_is_taken_without_lag(sandbox: RunningSandbox) -> None:
    replica = sandbox.server.sandbox.replica
    post(sandbox, "/order", {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                             "size": Decimal("0.01"), "price": 40000})  # fmt: skip
    assert replica.copies_taken == 0 and sandbox.exchange.store.on_commit is None
    sandbox.set_faults({"read_lag_ms": 500})
    get(sandbox, "/positions")  # a read commits nothing, so it copies nothing
    assert replica.copies_taken == 1  # the starting copy
    post(sandbox, "/order", {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
                             "size": Decimal("0.01"), "price": 40001})  # fmt: skip
    assert replica.copies_taken == 2


def test_a_copy_is_query_only(sandbox: RunningSandbox) -> None:
    copy = Store.read_only_copy(sandbox.exchange.store.image())
    with copy.transaction() as connection:
        assert connection.execute("SELECT COUNT(*) FROM symbols").fetchone()[0] == len(DEMO_SYMBOLS)
        with pytest.raises(Exception, match="readonly"):
            connection.execute("DELETE FROM symbols")
