"""Every documented REST endpoint, over real sockets with real signatures, happy paths first.

The request bodies are the documentation's own examples (`docs/levret-api.md` and the
exchange's curl/Python samples), so a client following the documentation works here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler import jsonnum
from reconciler.sandbox.app import API_PREFIX, ENDPOINTS
from tests.conftest import RunningSandbox
from tests.signing import call, data_of, expect_error, signed_request

DOC_ORDER = (
    b'{"userId":"demo","symbol":"BTC_USDT","side":"buy","orderType":"limit",'
    b'"size":0.01,"price":45000}'
)


def get(sandbox: RunningSandbox, path: str, **options: Any) -> Any:
    return data_of(signed_request(sandbox.base_url, "GET", API_PREFIX + path, **options))


def post(sandbox: RunningSandbox, path: str, body: bytes | Any = b"", **options: Any) -> Any:
    return data_of(signed_request(sandbox.base_url, "POST", API_PREFIX + path, body, **options))


def public(sandbox: RunningSandbox, path: str) -> Any:
    return data_of(sandbox.http.get(API_PREFIX + path))


def test_public_market_endpoints(sandbox: RunningSandbox) -> None:
    symbols = public(sandbox, "/market/supported-symbols")
    btc = next(s for s in symbols if s["symbol"] == "BTC_USDT")
    assert btc["tickSize"] == Decimal("0.1") and btc["status"] == "trading"

    stats = public(sandbox, "/market/market-stats?symbol=BTC_USDT")
    assert stats["symbol"] == "BTC_USDT" and stats["markPrice"] == 45000
    every = public(sandbox, "/market/market-stats")
    assert {s["symbol"] for s in every} == {s["symbol"] for s in symbols}

    book = public(sandbox, "/market/orderbook?symbol=BTC_USDT&depth=5")
    assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
    assert book["bids"][0][0] < book["asks"][0][0]

    candles = public(sandbox, "/market/candles?symbol=BTC_USDT&interval=1h&limit=10")
    assert 0 < len(candles) <= 10
    assert [c["openTime"] for c in candles] == sorted(c["openTime"] for c in candles)


def test_documented_order_example_round_trip(sandbox: RunningSandbox) -> None:
    order = post(sandbox, "/order", DOC_ORDER)
    assert order["userId"] == "demo" and order["symbol"] == "BTC_USDT"
    assert order["size"] == Decimal("0.01") and order["price"] == 45000
    assert order["status"] in {"open", "partially_filled", "filled"}

    assert get(sandbox, f"/order/{order['id']}")["id"] == order["id"]
    fills = get(sandbox, f"/trade/order/{order['id']}?page=1&pageSize=10")
    assert set(fills) == {"items", "page", "pageSize", "total"}
    assert (
        sum(f["size"] for f in fills["items"])
        == get(sandbox, f"/order/{order['id']}")["filledSize"]
    )


def test_open_orders_cancel_and_cancel_all(sandbox: RunningSandbox) -> None:
    resting = post(
        sandbox,
        "/order",
        {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
         "size": Decimal("0.01"), "price": 40000},
    )  # fmt: skip
    assert resting["status"] == "open"
    page = get(sandbox, "/order/open?userId=demo&symbol=BTC_USDT&page=1&pageSize=50")
    assert resting["id"] in [o["id"] for o in page["items"]]
    assert page["page"] == 1 and page["pageSize"] == 50 and page["total"] >= 1

    cancelled = post(sandbox, "/order/cancel", {"orderId": resting["id"]})
    assert cancelled["status"] == "cancelled"
    again = signed_request(
        sandbox.base_url, "POST", API_PREFIX + "/order/cancel", {"orderId": resting["id"]}
    )
    expect_error(again, 409, "ORDER_NOT_OPEN")

    result = post(sandbox, "/order/cancelAll", {"userId": "demo", "symbol": "SOL_USDT"})
    assert result["count"] == len(result["cancelled"]) == 2
    assert get(sandbox, "/order/open?symbol=SOL_USDT")["total"] == 0


def test_documented_position_examples(sandbox: RunningSandbox) -> None:
    positions = get(sandbox, "/positions")
    btc = next(p for p in positions if p["symbol"] == "BTC_USDT")
    assert get(sandbox, "/positions?symbol=BTC_USDT") == [btc]
    base = f"/positions/{btc['id']}"

    levered = post(sandbox, base + "/leverage", b'{"leverage": 20}')
    assert levered["leverage"] == 20
    assert levered["margin"] == levered["entryPrice"] * levered["size"] / 20

    added = post(sandbox, base + "/margin", b'{"mode": "add", "amount": 50}')
    assert added["margin"] == levered["margin"] + 50

    protected = post(sandbox, base + "/tpsl", b'{"takeProfitPrice": 47000, "stopLossPrice": 44000}')
    assert protected["takeProfitPrice"] == 47000 and protected["stopLossPrice"] == 44000

    closing = post(sandbox, base + "/close")
    assert closing["status"] == "filled" and closing["side"] == "sell"
    assert closing["size"] == btc["size"]
    assert all(p["id"] != btc["id"] for p in get(sandbox, "/positions"))


def test_wallet_and_trade_history(sandbox: RunningSandbox) -> None:
    overview = get(sandbox, "/wallet/account-overview")
    assert overview["userId"] == "demo" and overview["currency"] == "USDT"
    wallet = overview["deposits"] - overview["totalFees"] + overview["realizedPnl"]
    assert overview["walletBalance"] == wallet
    assert overview["availableBalance"] == (
        wallet - overview["positionMargin"] - overview["orderMargin"]
    )
    assert overview["equity"] == wallet + overview["unrealizedPnl"]

    history = get(sandbox, "/wallet/balance-history?days=7")
    assert history[0]["type"] == "deposit"
    assert history[-1]["balance"] == overview["walletBalance"]

    trades = get(sandbox, "/trade/user/demo?symbol=BTC_USDT&page=1&pageSize=10")
    assert trades["total"] >= 1 and all(t["symbol"] == "BTC_USDT" for t in trades["items"])
    every = get(sandbox, "/trade/user/demo")
    assert sum(t["fee"] for t in every["items"]) == overview["totalFees"]


def test_read_only_key_reads(sandbox: RunningSandbox) -> None:
    overview = get(sandbox, "/wallet/account-overview", key="demo-read", secret="demo-read-secret")
    assert overview["userId"] == "demo"


def test_unknown_order_and_position_are_not_found(sandbox: RunningSandbox) -> None:
    response, _ = call(sandbox.base_url, "GET", API_PREFIX + "/order/999999")
    expect_error(response, 404, "NOT_FOUND")
    response, _ = call(sandbox.base_url, "POST", API_PREFIX + "/positions/999999/close")
    expect_error(response, 404, "NOT_FOUND")


def test_unknown_routes_and_verbs_use_the_error_envelope(sandbox: RunningSandbox) -> None:
    expect_error(sandbox.http.get(API_PREFIX + "/no/such/route"), 404, "NOT_FOUND")
    expect_error(sandbox.http.get("/elsewhere"), 404, "NOT_FOUND")
    expect_error(sandbox.http.get(API_PREFIX + "/order/"), 404, "NOT_FOUND")
    response = sandbox.http.delete(API_PREFIX + "/order/open")
    expect_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


def test_unexpected_exception_is_internal_error(sandbox: RunningSandbox) -> None:
    def broken(user_id: str) -> Any:
        raise RuntimeError("simulated bug")

    sandbox.exchange.account_overview = broken  # type: ignore[method-assign]
    response = signed_request(sandbox.base_url, "GET", API_PREFIX + "/wallet/account-overview")
    payload = expect_error(response, 500, "INTERNAL_ERROR")
    assert "simulated" not in payload["error"]["message"]


def test_every_response_is_dated(sandbox: RunningSandbox) -> None:
    for response in (
        sandbox.http.get(API_PREFIX + "/market/supported-symbols"),
        sandbox.http.get(API_PREFIX + "/nowhere"),
        signed_request(sandbox.base_url, "GET", API_PREFIX + "/positions"),
        sandbox.http.get("/_sandbox/faults"),
    ):
        assert response.headers["date"].endswith(" GMT")
        assert response.headers.get_list("date") == [response.headers["date"]]


def test_openapi_document_lists_every_endpoint(sandbox: RunningSandbox) -> None:
    response = sandbox.http.get(API_PREFIX + "/openapi.json")
    document = jsonnum.loads(response.content)
    assert document["openapi"].startswith("3.")
    served = {(e.method.lower(), e.path) for e in ENDPOINTS}
    listed = {(verb, path) for path, ops in document["paths"].items() for verb in ops}
    assert listed == served
    for path, operations in document["paths"].items():
        for operation in operations.values():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == {part.strip("{}") for part in path.split("/") if "{" in part}
    refs = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs <= set(document["components"]["schemas"])
