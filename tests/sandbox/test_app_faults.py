"""Injected faults: what executes, what the client sees, what the request log records."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx

from reconciler import jsonnum
from reconciler.sandbox.app import API_PREFIX
from reconciler.sandbox.control import CUT_STATUS
from tests.conftest import RunningSandbox
from tests.signing import data_of, expect_error, signed_request

ORDER = API_PREFIX + "/order"


def resting_order(price: int) -> dict[str, Any]:
    return {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
            "size": Decimal("0.01"), "price": price}  # fmt: skip


def open_order_prices(sandbox: RunningSandbox) -> list[Decimal]:
    page = sandbox.exchange.open_orders("demo", "BTC_USDT", 1, 100, None, None)
    return sorted(order["price"] for order in page["items"])


def attempt(sandbox: RunningSandbox, body: Any) -> httpx.Response | httpx.TransportError:
    try:
        return signed_request(sandbox.base_url, "POST", ORDER, body)
    except httpx.TransportError as error:
        return error


def test_drop_after_commit_executes_exactly_once(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"seed": 7, "drop_after_commit": 1})
    baseline = open_order_prices(sandbox)
    sandbox.clear_requests()
    outcomes = [attempt(sandbox, resting_order(41000 + i)) for i in range(8)]

    cut = [o for o in outcomes if isinstance(o, httpx.TransportError)]
    gateway = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert cut and gateway, "the seeded RNG alternates between both kinds of drop"
    assert all(isinstance(o, httpx.RemoteProtocolError) for o in cut)
    for response in gateway:
        expect_error(response, 502, "INTERNAL_ERROR")

    # Every order executed once, although no client saw a success.
    added = sorted(set(open_order_prices(sandbox)) - set(baseline))
    assert added == [Decimal(41000 + i) for i in range(8)]
    log = sandbox.requests()
    assert [(e["method"], e["path"]) for e in log] == [("POST", ORDER)] * 8
    statuses = [e["status"] for e in log]
    expected = [CUT_STATUS if isinstance(o, httpx.TransportError) else 502 for o in outcomes]
    assert statuses == expected


def test_drop_after_commit_single_order(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"seed": 1, "drop_after_commit": 1})
    before = len(open_order_prices(sandbox))
    sandbox.clear_requests()
    outcome = attempt(sandbox, resting_order(40500))
    assert isinstance(outcome, httpx.TransportError) or outcome.status_code == 502
    assert len(open_order_prices(sandbox)) == before + 1
    log = sandbox.requests()
    assert len(log) == 1 and log[0]["path"] == ORDER and log[0]["status"] in (0, 502)


def test_fail_before_executes_nothing(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"seed": 3, "fail_before": 1})
    baseline = open_order_prices(sandbox)
    for i in range(3):
        response = signed_request(sandbox.base_url, "POST", ORDER, resting_order(41000 + i))
        expect_error(response, 503, "INTERNAL_ERROR")
        assert "X-RateLimit-Limit" in response.headers
    assert open_order_prices(sandbox) == baseline
    # Reads are not mutating calls: they still work.
    assert data_of(signed_request(sandbox.base_url, "GET", API_PREFIX + "/positions"))
    assert [e["status"] for e in sandbox.requests()][-4:] == [503, 503, 503, 200]


def test_faults_are_reproducible_from_the_seed(sandbox: RunningSandbox) -> None:
    def run() -> list[int]:
        sandbox.set_faults({"seed": 42, "fail_before": Decimal("0.5")})
        statuses = []
        for i in range(10):
            body = {"orderId": str(900000 + i)}
            response = signed_request(sandbox.base_url, "POST", ORDER + "/cancel", body)
            statuses.append(response.status_code)
        return statuses

    first = run()
    assert set(first) == {404, 503}
    assert run() == first


def test_latency_applies_to_reads(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"latency_ms": [150, 150]})
    started = time.perf_counter()
    data_of(sandbox.http.get(API_PREFIX + "/market/supported-symbols"))
    assert time.perf_counter() - started >= 0.15


def test_partial_fills(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"partial_fills": True})
    assert sandbox.exchange.config.partial_fill_ratio == Decimal("0.5")
    marketable = {**resting_order(45100), "size": Decimal("0.02")}
    order = data_of(signed_request(sandbox.base_url, "POST", ORDER, marketable))
    assert order["status"] == "partially_filled" and order["filledSize"] == Decimal("0.01")
    sandbox.set_faults({})
    assert sandbox.exchange.config.partial_fill_ratio is None


def test_cut_response_is_not_a_complete_message(sandbox: RunningSandbox) -> None:
    """Even a client that reads headers first never gets a body to parse."""
    sandbox.set_faults({"seed": 7, "drop_after_commit": 1})
    seen_cut = False
    with httpx.Client(timeout=10) as client:
        for i in range(6):
            body = jsonnum.dumps(resting_order(42500 + i))
            try:
                response = signed_request(sandbox.base_url, "POST", ORDER, body, client=client)
            except httpx.RemoteProtocolError:
                seen_cut = True
                continue
            assert response.status_code == 502
    assert seen_cut
