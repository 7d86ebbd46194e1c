"""The unsigned `/_sandbox` control API: its exact shapes, the request log, reset, loopback."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from reconciler import jsonnum
from reconciler.sandbox.app import API_PREFIX, create_app
from tests.conftest import RunningSandbox
from tests.signing import data_of, expect_error, signed_request

OVERVIEW = API_PREFIX + "/wallet/account-overview"


def test_request_log_records_every_api_request(sandbox: RunningSandbox) -> None:
    sandbox.clear_requests()
    sandbox.http.get(API_PREFIX + "/market/market-stats?symbol=BTC_USDT")
    signed_request(sandbox.base_url, "GET", API_PREFIX + "/order/open?symbol=BTC_USDT")
    signed_request(sandbox.base_url, "GET", OVERVIEW, key="nobody", secret="x")
    sandbox.http.get(API_PREFIX + "/missing", headers={"X-API-KEY-ID": "demo-key"})
    sandbox.http.get("/_sandbox/faults")  # control calls are not logged

    log = sandbox.requests()
    assert [set(entry) for entry in log] == [
        {"method", "path", "status", "code", "keyId", "time"}
    ] * 4
    assert [(e["method"], e["path"], e["status"], e["code"], e["keyId"]) for e in log] == [
        ("GET", "/api/v1/market/market-stats?symbol=BTC_USDT", 200, None, None),
        ("GET", "/api/v1/order/open?symbol=BTC_USDT", 200, None, "demo-key"),
        ("GET", OVERVIEW, 401, "INVALID_API_KEY", "nobody"),
        ("GET", "/api/v1/missing", 404, "NOT_FOUND", "demo-key"),
    ]
    times = [e["time"] for e in log]
    assert times == sorted(times) and all(isinstance(t, int) for t in times)

    sandbox.clear_requests()
    assert sandbox.requests() == []


def test_prices_move_the_mark(sandbox: RunningSandbox) -> None:
    result = sandbox.set_prices({"BTC_USDT": 46000, "ETH_USDT": "2400.5"})
    assert result["marks"] == {"BTC_USDT": 46000, "ETH_USDT": Decimal("2400.5")}
    stats = data_of(sandbox.http.get(API_PREFIX + "/market/market-stats?symbol=ETH_USDT"))
    assert stats["markPrice"] == Decimal("2400.5")
    refused = sandbox.http.post("/_sandbox/prices", content=b'{"NOPE_USDT": 1}')
    expect_error(refused, 404, "NOT_FOUND")


def test_accounts_open_a_usable_key(sandbox: RunningSandbox) -> None:
    created = sandbox.create_account("carol", "carol-key", "carol-secret", balance=2500)
    assert created["keyId"] == "carol-key"
    overview = data_of(
        signed_request(sandbox.base_url, "GET", OVERVIEW, key="carol-key", secret="carol-secret")
    )
    assert overview["userId"] == "carol" and overview["walletBalance"] == 2500
    duplicate = sandbox.http.post(
        "/_sandbox/accounts",
        content=jsonnum.dumps({"userId": "carol", "apiKeyId": "k2", "apiKeySecret": "s"}),
    )
    expect_error(duplicate, 400, "VALIDATION_ERROR")


def test_symbols_accept_an_object_or_a_bare_list(sandbox: RunningSandbox) -> None:
    spec = {
        "symbol": "PEPE_USDT",
        "tickSize": Decimal("0.0000001"),
        "stepSize": 1000,
        "minSize": 1000,
        "maxLeverage": 20,
        "markPrice": Decimal("0.0000123"),
    }
    added = sandbox.control("POST", "symbols", {"symbols": [spec]})
    assert added[0]["symbol"] == "PEPE_USDT" and added[0]["baseAsset"] == "PEPE"
    sandbox.control("POST", "symbols", [{**spec, "symbol": "WIF_USDT", "markPrice": 2}])
    listed = {
        s["symbol"] for s in data_of(sandbox.http.get(API_PREFIX + "/market/supported-symbols"))
    }
    assert {"PEPE_USDT", "WIF_USDT"} <= listed
    bad = sandbox.http.post("/_sandbox/symbols", content=b'{"symbols": 3}')
    expect_error(bad, 400, "VALIDATION_ERROR")


def test_faults_are_set_read_and_cleared(sandbox: RunningSandbox) -> None:
    profile = {
        "seed": 1,
        "fail_before": Decimal("0.1"),
        "drop_after_commit": Decimal("0.3"),
        "latency_ms": [0, 50],
        "clock_skew_ms": 0,
        "partial_fills": False,
    }
    assert sandbox.set_faults(profile) == profile
    assert sandbox.control("GET", "faults") == profile
    cleared = sandbox.set_faults({})
    assert cleared == sandbox.control("GET", "faults")
    assert cleared["fail_before"] == 0 and cleared["latency_ms"] == [0, 0]
    for body in (b'{"typo": 1}', b'{"fail_before": 2}', b'{"latency_ms": [5, 1]}', b"[1]"):
        response = sandbox.http.post("/_sandbox/faults", content=body)
        expect_error(response, 400, "VALIDATION_ERROR")


def test_rate_limit_can_be_changed_at_run_time(sandbox: RunningSandbox) -> None:
    assert sandbox.set_rate_limit(2, 2) == {"limit": 2, "window": 2}
    for _ in range(2):
        data_of(signed_request(sandbox.base_url, "GET", OVERVIEW))
    expect_error(signed_request(sandbox.base_url, "GET", OVERVIEW), 429, "RATE_LIMITED")
    bad = sandbox.http.post("/_sandbox/rate-limit", content=b'{"limit": 0}')
    expect_error(bad, 400, "VALIDATION_ERROR")


def test_reset_restores_the_demo_and_clears_everything(sandbox: RunningSandbox) -> None:
    before = data_of(signed_request(sandbox.base_url, "GET", OVERVIEW))
    order = {"userId": "demo", "symbol": "ETH_USDT", "side": "buy", "orderType": "market",
             "size": 1}  # fmt: skip
    data_of(signed_request(sandbox.base_url, "POST", API_PREFIX + "/order", order))
    sandbox.create_account("dave")
    sandbox.set_faults({"latency_ms": [1, 2], "partial_fills": True})
    sandbox.set_rate_limit(1, 60)
    data_of(signed_request(sandbox.base_url, "GET", OVERVIEW))

    assert sandbox.control("POST", "reset") is None
    assert sandbox.requests() == []
    assert sandbox.control("GET", "faults")["latency_ms"] == [0, 0]
    assert sandbox.exchange.config.partial_fill_ratio is None
    after = signed_request(sandbox.base_url, "GET", OVERVIEW)
    assert after.headers["X-RateLimit-Limit"] == "1200"
    fresh = data_of(after)
    assert {k: v for k, v in fresh.items()} == before
    gone = signed_request(sandbox.base_url, "GET", OVERVIEW, key="dave-key", secret="dave-secret")
    expect_error(gone, 401, "INVALID_API_KEY")


def test_control_refuses_non_loopback_clients(sandbox: RunningSandbox) -> None:
    app = create_app(sandbox.exchange)

    async def from_remote() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            return await client.post("/_sandbox/reset")

    response = asyncio.run(from_remote())
    expect_error(response, 403, "FORBIDDEN_SCOPE")


def test_control_errors_use_the_envelope(sandbox: RunningSandbox) -> None:
    response = sandbox.http.post("/_sandbox/prices", content=b"{oops")
    expect_error(response, 400, "VALIDATION_ERROR")
    expect_error(sandbox.http.put("/_sandbox/reset"), 405, "METHOD_NOT_ALLOWED")
