"""Entities, lists and pages in every accepted shape; fields the tool never uses may be absent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reconciler.levret import parse
from reconciler.levret.endpoints import endpoint_label, template
from reconciler.levret.fields import WireFormatError

TRADES = "GET /trade/user/:userId"
ORDER = {"id": "o1", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit", "size": "1",
         "price": "100", "status": "open", "createdAt": 1_700_000_000_005,
         "updatedAt": 1_700_000_000_006}  # fmt: skip
FILL = {"id": "t1", "orderId": "o1", "symbol": "BTC_USDT", "side": "sell", "size": 1,
        "price": 100, "fee": 0, "realizedPnl": 0, "timestamp": 1_700_000_000_000}  # fmt: skip


def test_a_fill_without_order_id_is_read_with_none() -> None:
    liquidation = {key: value for key, value in FILL.items() if key != "orderId"}
    (fill,) = parse.read_list(TRADES, [liquidation], parse.trade).value
    assert fill.order_id is None
    assert fill.size == Decimal(1)


def test_an_order_without_timestamps_reads_as_time_zero() -> None:
    bare = {key: value for key, value in ORDER.items() if key not in ("createdAt", "updatedAt")}
    read = parse.read_one("GET /order/:id", bare, parse.order).value
    assert (read.created_at, read.updated_at) == (0, 0)


def test_updated_at_defaults_to_created_at() -> None:
    only_created = {key: value for key, value in ORDER.items() if key != "updatedAt"}
    assert (
        parse.read_one("GET /order/:id", only_created, parse.order).value.updated_at
        == 1_700_000_000_005
    )


def test_a_symbol_without_base_asset() -> None:
    spec = {"symbol": "X", "tickSize": "0.1", "stepSize": "1", "minSize": "1", "maxLeverage": "20"}
    (read,) = parse.read_list("GET /market/supported-symbols", [spec], parse.symbol_spec).value
    assert (read.base_asset, read.quote_asset, read.status, read.max_leverage) == (
        "",
        "USDT",
        "trading",
        20,
    )


def test_stats_need_only_the_mark() -> None:
    stats = parse.read_one(
        "GET /market/market-stats", {"symbol": "X", "mark_price": "7"}, parse.market_stats
    )
    assert stats.value.mark_price == Decimal(7)
    assert stats.value.last_price is None


def test_account_needs_only_equity() -> None:
    read = parse.read_one(
        "GET /wallet/account-overview", {"totalEquity": "10"}, parse.account_overview
    )
    assert read.value.equity == Decimal(10)


@pytest.mark.parametrize(
    "container", ["items", "list", "rows", "data", "records", "results", "symbols"]
)
def test_lists_under_common_container_names(container: str) -> None:
    read = parse.read_list(TRADES, {container: [FILL]}, parse.trade)
    assert [fill.id for fill in read.value] == ["t1"]
    assert read.container == f"list under {container!r}"


def test_a_plain_list_is_a_plain_list() -> None:
    assert parse.read_list(TRADES, [FILL], parse.trade).container == "plain list"


@pytest.mark.parametrize(
    "answer",
    [
        {"items": [FILL], "page": 2, "pageSize": 1, "total": 3},
        {"rows": [FILL], "page": "2", "page_size": "1", "total": "3"},
        {"list": [FILL], "pagination": {"page": 2, "page_size": 1, "total": 3}},
        {"data": [FILL], "meta": {"currentPage": 2, "perPage": 1, "totalCount": 3}},
    ],
)
def test_pagination_at_the_top_or_nested(answer: dict[str, Any]) -> None:
    page = parse.read_page(TRADES, answer, parse.trade).value
    assert (page.page, page.page_size, page.total, [t.id for t in page.items]) == (2, 1, 3, ["t1"])


def test_no_pagination_is_one_complete_page() -> None:
    page = parse.read_page(TRADES, [FILL, {**FILL, "id": "t2"}], parse.trade).value
    assert (page.page, page.page_size, page.total) == (1, 2, 2)
    empty = parse.read_page(TRADES, [], parse.trade).value
    assert (empty.items, empty.total) == ([], 0)


def test_an_answer_without_any_list() -> None:
    with pytest.raises(WireFormatError) as caught:
        parse.read_page(TRADES, {"count": 3}, parse.trade)
    assert str(caught.value).startswith("GET /trade/user/:userId: answer: no list of trades")
    assert "present: count" in str(caught.value)


def test_a_page_with_a_total_but_no_page_size() -> None:
    with pytest.raises(WireFormatError, match="pagination: field pageSize is missing"):
        parse.read_page(TRADES, {"items": [], "total": 0}, parse.trade)


def test_book_levels_as_pairs_or_objects() -> None:
    book = parse.read_one(
        "GET /market/orderbook",
        {"bids": [["99.5", "2"]], "asks": [{"price": 100, "qty": "1"}]},
        parse.order_book,
    ).value
    assert book.bids == [(Decimal("99.5"), Decimal(2))]
    assert book.asks == [(Decimal(100), Decimal(1))]


def test_cancel_all_ids_as_strings_or_objects() -> None:
    read = parse.read_one(
        "POST /order/cancelAll", {"canceled": [{"orderId": 4}, "5"]}, parse.cancel_all_result
    ).value
    assert (read.cancelled, read.count) == (["4", "5"], 2)


def test_cross_margin_is_a_meaning_the_tool_does_not_have() -> None:
    position = {"positionId": "p", "symbol": "X", "side": "LONG", "size": 1, "entryPrice": 1,
                "markPrice": 1, "leverage": 2, "margin": 1, "marginMode": "cross"}  # fmt: skip
    with pytest.raises(WireFormatError, match="field marginMode under marginMode is 'cross'"):
        parse.read_list("GET /positions", [position], parse.position)


def test_the_second_entity_is_named_by_index_and_id() -> None:
    broken = {**FILL, "id": "t2", "price": "n/a"}
    with pytest.raises(WireFormatError, match=r"trade #1 \(id t2\): field price under price"):
        parse.read_list(TRADES, [FILL, broken], parse.trade)


@pytest.mark.parametrize(
    ("method", "path", "label"),
    [
        ("GET", "/order/123", "GET /order/:id"),
        ("GET", "/order/open?userId=u", "GET /order/open"),
        ("POST", "/order/cancelAll", "POST /order/cancelAll"),
        ("POST", "/positions/77/tpsl", "POST /positions/:id/tpsl"),
        ("GET", "/trade/user/alice", "GET /trade/user/:userId"),
        ("GET", "/trade/order/9", "GET /trade/order/:orderId"),
    ],
)
def test_endpoints_are_named_by_template(method: str, path: str, label: str) -> None:
    assert endpoint_label(method, path) == label
    assert template(path) == label.split(" ", 1)[1]
