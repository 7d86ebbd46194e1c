"""Signature, scope, validation and rate-limit refusals: documented code, status and envelope."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from reconciler.sandbox.app import API_PREFIX
from reconciler.sandbox.auth import sign as server_sign
from tests.conftest import RunningSandbox, SandboxFactory
from tests.signing import data_of, expect_error, now_ms, sign, signed_headers, signed_request

OVERVIEW = API_PREFIX + "/wallet/account-overview"
ORDER = API_PREFIX + "/order"
DOC_ORDER = {
    "userId": "demo",
    "symbol": "BTC_USDT",
    "side": "buy",
    "orderType": "limit",
    "size": 1,
    "price": 30000,
}


def send(sandbox: RunningSandbox, method: str, target: str, body: bytes, headers: Any) -> Any:
    return sandbox.http.request(method, target, content=body, headers=headers)


def test_unknown_key(sandbox: RunningSandbox) -> None:
    response = signed_request(sandbox.base_url, "GET", OVERVIEW, key="nobody", secret="x")
    expect_error(response, 401, "INVALID_API_KEY")


@pytest.mark.parametrize("missing", ["X-API-KEY-ID", "X-API-KEY-TS", "X-API-KEY-SIGN"])
def test_missing_auth_header(sandbox: RunningSandbox, missing: str) -> None:
    headers = signed_headers("GET", OVERVIEW, b"", "demo-key", "demo-secret")
    del headers[missing]
    expect_error(send(sandbox, "GET", OVERVIEW, b"", headers), 401, "INVALID_API_KEY")


def test_no_headers_at_all(sandbox: RunningSandbox) -> None:
    expect_error(sandbox.http.get(OVERVIEW), 401, "INVALID_API_KEY")


def test_wrong_secret_header_and_absent_secret_header(sandbox: RunningSandbox) -> None:
    headers = signed_headers("GET", OVERVIEW, b"", "demo-key", "demo-secret")
    headers["X-API-KEY-SECRET"] = "not-the-secret"
    expect_error(send(sandbox, "GET", OVERVIEW, b"", headers), 401, "INVALID_API_KEY")
    quiet = signed_request(sandbox.base_url, "GET", OVERVIEW, send_secret=False)
    assert data_of(quiet)["userId"] == "demo"


def test_bad_signature(sandbox: RunningSandbox) -> None:
    headers = signed_headers("GET", OVERVIEW, b"", "demo-key", "wrong-secret", send_secret=False)
    expect_error(send(sandbox, "GET", OVERVIEW, b"", headers), 401, "INVALID_SIGNATURE")


def test_signature_covers_the_body(sandbox: RunningSandbox) -> None:
    signed = b'{"orderId":"1"}'
    headers = signed_headers("POST", ORDER + "/cancel", signed, "demo-key", "demo-secret")
    response = send(sandbox, "POST", ORDER + "/cancel", b'{"orderId":"2"}', headers)
    expect_error(response, 401, "INVALID_SIGNATURE")


def test_signature_covers_the_raw_query_as_sent(sandbox: RunningSandbox) -> None:
    target = API_PREFIX + "/positions?symbol=BTC%5FUSDT"
    assert data_of(signed_request(sandbox.base_url, "GET", target))
    decoded = API_PREFIX + "/positions?symbol=BTC_USDT"
    headers = signed_headers("GET", decoded, b"", "demo-key", "demo-secret")
    expect_error(send(sandbox, "GET", target, b"", headers), 401, "INVALID_SIGNATURE")


def test_expired_signature(sandbox: RunningSandbox) -> None:
    response = signed_request(sandbox.base_url, "GET", OVERVIEW, ts=now_ms() - 61_000)
    expect_error(response, 401, "SIGNATURE_EXPIRED")
    short = signed_request(sandbox.base_url, "GET", OVERVIEW, ts=now_ms() - 3_000, exp=1_000)
    expect_error(short, 401, "SIGNATURE_EXPIRED")


def test_timestamp_in_future(sandbox: RunningSandbox) -> None:
    response = signed_request(sandbox.base_url, "GET", OVERVIEW, ts=now_ms() + 30_000)
    expect_error(response, 401, "TIMESTAMP_IN_FUTURE")
    tolerated = signed_request(sandbox.base_url, "GET", OVERVIEW, ts=now_ms() + 3_000)
    assert data_of(tolerated)["userId"] == "demo"


def test_exp_above_maximum_is_a_validation_error(sandbox: RunningSandbox) -> None:
    response = signed_request(sandbox.base_url, "GET", OVERVIEW, exp=60_001)
    expect_error(response, 400, "VALIDATION_ERROR")


def test_replayed_request(sandbox: RunningSandbox) -> None:
    body = b'{"orderId":"999999"}'
    headers = signed_headers("POST", ORDER + "/cancel", body, "demo-key", "demo-secret")
    expect_error(send(sandbox, "POST", ORDER + "/cancel", body, headers), 404, "NOT_FOUND")
    replay = send(sandbox, "POST", ORDER + "/cancel", body, headers)
    expect_error(replay, 401, "REPLAYED_REQUEST")


def test_read_only_key_cannot_trade(sandbox: RunningSandbox) -> None:
    response = signed_request(
        sandbox.base_url, "POST", ORDER, DOC_ORDER, key="demo-read", secret="demo-read-secret"
    )
    expect_error(response, 403, "FORBIDDEN_SCOPE")
    assert (
        data_of(signed_request(sandbox.base_url, "GET", API_PREFIX + "/order/open"))["total"] == 3
    )  # the demo's resting orders, nothing added


def test_trade_only_key_cannot_read(sandbox: RunningSandbox) -> None:
    sandbox.create_account("bot", "bot-key", "bot-secret", scopes=("trade",))
    response = signed_request(sandbox.base_url, "GET", OVERVIEW, key="bot-key", secret="bot-secret")
    expect_error(response, 403, "FORBIDDEN_SCOPE")


def test_another_users_id_is_forbidden(sandbox: RunningSandbox) -> None:
    sandbox.create_account("alice")
    body = {**DOC_ORDER, "userId": "alice"}
    expect_error(signed_request(sandbox.base_url, "POST", ORDER, body), 403, "FORBIDDEN_SCOPE")
    cancel_all = {"userId": "alice"}
    response = signed_request(sandbox.base_url, "POST", ORDER + "/cancelAll", cancel_all)
    expect_error(response, 403, "FORBIDDEN_SCOPE")
    for target in (
        API_PREFIX + "/order/open?userId=alice",
        API_PREFIX + "/trade/user/alice",
    ):
        expect_error(signed_request(sandbox.base_url, "GET", target), 403, "FORBIDDEN_SCOPE")


def test_another_users_order_is_not_found(sandbox: RunningSandbox) -> None:
    sandbox.create_account("alice")
    order = data_of(
        signed_request(
            sandbox.base_url, "POST", ORDER, {**DOC_ORDER, "userId": "alice"},
            key="alice-key", secret="alice-secret",
        )
    )  # fmt: skip
    response = signed_request(sandbox.base_url, "GET", f"{ORDER}/{order['id']}")
    expect_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        b'{"userId":"demo","symbol":"BTC_USDT","side":"buy","orderType":"limit",'
        b'"size":NaN,"price":45000}',
        b'{"userId":"demo","symbol":"BTC_USDT","side":"up","orderType":"limit",'
        b'"size":0.01,"price":45000}',
        b'{"userId":"demo","symbol":"BTC_USDT","side":"buy","orderType":"limit",'
        b'"size":0.0001,"price":45000}',
        b'{"userId":"demo","symbol":"BTC_USDT","side":"buy","orderType":"limit",'
        b'"size":0.01,"price":45000.05}',
        b'{"userId":"demo","symbol":"BTC_USDT","side":"buy","orderType":"limit","size":0.01}',
        b"",
    ],
)
def test_malformed_order_bodies(sandbox: RunningSandbox, body: bytes) -> None:
    expect_error(signed_request(sandbox.base_url, "POST", ORDER, body), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "target",
    [
        "/order/open?page=0",
        "/order/open?page=abc",
        "/order/open?pageSize=101",
        "/order/open?pageSize=0",
        "/order/open?page=1&page=2",
        "/order/open?startTime=-5",
        "/trade/user/demo?pageSize=1.5",
        "/wallet/balance-history?days=0",
        "/wallet/balance-history?days=366",
    ],
)
def test_malformed_private_queries(sandbox: RunningSandbox, target: str) -> None:
    response = signed_request(sandbox.base_url, "GET", API_PREFIX + target)
    expect_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "target",
    [
        "/market/orderbook",
        "/market/orderbook?symbol=BTC_USDT&depth=501",
        "/market/candles",
        "/market/candles?symbol=BTC_USDT&interval=2m",
        "/market/candles?symbol=BTC_USDT&limit=1001",
    ],
)
def test_malformed_public_queries(sandbox: RunningSandbox, target: str) -> None:
    expect_error(sandbox.http.get(API_PREFIX + target), 400, "VALIDATION_ERROR")


def test_unknown_symbol_is_not_found(sandbox: RunningSandbox) -> None:
    expect_error(
        sandbox.http.get(API_PREFIX + "/market/market-stats?symbol=NOPE_USDT"), 404, "NOT_FOUND"
    )


def test_rate_limit_rolling_window(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(rate_limit=3, rate_window=2)
    seen = []
    for _ in range(3):
        response = signed_request(sandbox.base_url, "GET", OVERVIEW)
        data_of(response)
        seen.append(int(response.headers["X-RateLimit-Remaining"]))
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert seen == [2, 1, 0]

    limited = signed_request(sandbox.base_url, "GET", OVERVIEW)
    expect_error(limited, 429, "RATE_LIMITED")
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert limited.headers["X-RateLimit-Remaining"] == "0"

    # Another key has its own budget; a public endpoint has none.
    sandbox.create_account("other")
    other = signed_request(
        sandbox.base_url, "GET", OVERVIEW, key="other-key", secret="other-secret"
    )
    assert data_of(other)["userId"] == "other"
    assert "X-RateLimit-Limit" not in sandbox.http.get(API_PREFIX + "/market/market-stats").headers

    time.sleep(retry_after)  # the window itself is what is under test: let it roll
    assert data_of(signed_request(sandbox.base_url, "GET", OVERVIEW))["userId"] == "demo"


def test_refused_requests_count_against_the_budget(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(rate_limit=2, rate_window=2)
    for _ in range(2):
        bad = signed_request(sandbox.base_url, "GET", OVERVIEW, secret="wrong", send_secret=False)
        expect_error(bad, 401, "INVALID_SIGNATURE")
    expect_error(signed_request(sandbox.base_url, "GET", OVERVIEW), 429, "RATE_LIMITED")
    codes = [entry["code"] for entry in sandbox.requests()]
    assert codes == ["INVALID_SIGNATURE", "INVALID_SIGNATURE", "RATE_LIMITED"]


def test_date_header_follows_the_skewed_clock(sandbox: RunningSandbox) -> None:
    skew = 3_600_000
    sandbox.set_faults({"clock_skew_ms": skew})
    response = sandbox.http.get(API_PREFIX + "/market/supported-symbols")
    server_ms = parsedate_to_datetime(response.headers["date"]).timestamp() * 1000
    assert abs(server_ms - (now_ms() + skew)) < 5_000

    # A client trusting its own clock is expired by the skewed server...
    expect_error(signed_request(sandbox.base_url, "GET", OVERVIEW), 401, "SIGNATURE_EXPIRED")
    # ...and one that corrects by the offset it read from `Date` is accepted.
    offset = int(server_ms) - now_ms()
    corrected = signed_request(sandbox.base_url, "GET", OVERVIEW, ts=now_ms() + offset)
    assert data_of(corrected)["userId"] == "demo"


def test_both_signers_match_an_independent_vector() -> None:
    # `printf 'GET/api/v1/positions1700000000000' | openssl dgst -sha256 -hmac secret`
    vector = "9786059e6dd9b25aba5ed5686812a6b620f29729133006418dbabfe6637fa422"
    assert sign("secret", "get", "/api/v1/positions", "1700000000000", b"") == vector
    assert server_sign("secret", "GET", "/api/v1/positions", "1700000000000", b"") == vector
