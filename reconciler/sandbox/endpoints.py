"""The endpoint table: every documented REST endpoint of `docs/levret-api.md` under `/api/v1`.

`ENDPOINTS` is the single list of what is served; the routes (`app.py`) and the OpenAPI
document (`openapi()`) are both built from it, so the two cannot disagree. A handler runs in
the thread pool: it reads the query and calls the engine, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.sandbox.incoming import Query
from reconciler.sandbox.openapi import (
    NULLABLE_NUMBER,
    Param,
    list_of,
    openapi_document,
    page_of,
    ref,
)

if TYPE_CHECKING:
    from reconciler.sandbox.engine import Exchange

__all__ = ["API_PREFIX", "ENDPOINTS", "INTERVALS", "Call", "Endpoint", "openapi"]

API_PREFIX = "/api/v1"
INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d")


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it; handlers run in the thread pool and call the engine."""

    exchange: Exchange
    user_id: str
    path_params: Mapping[str, str]
    query: Query
    body: dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    scope: str | None  # None: public; "read" or "trade": signed
    handler: Callable[[Call], Any]
    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def mutating(self) -> bool:
        return self.method == "POST"


_SYMBOL = Param("symbol", {"type": "string"})
_PAGING = (
    Param("page", {"type": "integer", "minimum": 1, "default": 1}),
    Param("pageSize", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}),
    Param("startTime", {"type": "integer", "minimum": 0}),
    Param("endTime", {"type": "integer", "minimum": 0}),
)
_USER = Param("userId", {"type": "string"})


def _position_id(call: Call) -> str:
    return call.path_params["position_id"]


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/market/supported-symbols",
        None,
        lambda c: c.exchange.supported_symbols(),
        "List tradable symbols",
        data=list_of("SymbolSpec"),
    ),
    Endpoint(
        "GET",
        "/market/market-stats",
        None,
        lambda c: c.exchange.market_stats(c.query.text("symbol")),
        "Market statistics of one symbol, or of all without `symbol`",
        params=(_SYMBOL,),
        data={"oneOf": [ref("MarketStats"), list_of("MarketStats")]},
    ),
    Endpoint(
        "GET",
        "/market/orderbook",
        None,
        lambda c: c.exchange.orderbook(
            c.query.required("symbol"), c.query.bounded("depth", 50, 1, 500)
        ),
        "Order book, best first",
        params=(
            Param("symbol", {"type": "string"}, required=True),
            Param("depth", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        ),
        data=ref("OrderBook"),
    ),
    Endpoint(
        "GET",
        "/market/candles",
        None,
        lambda c: c.exchange.candles(
            c.query.required("symbol"),
            c.query.choice("interval", "1m", INTERVALS),
            c.query.bounded("limit", 500, 1, 1000),
        ),
        "Candles, oldest first",
        params=(
            Param("symbol", {"type": "string"}, required=True),
            Param("interval", {"type": "string", "enum": list(INTERVALS), "default": "1m"}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 500}),
        ),
        data=list_of("Candle"),
    ),
    Endpoint(
        "POST",
        "/order",
        "trade",
        lambda c: c.exchange.place_order(c.user_id, c.body),
        "Place an order",
        body=ref("OrderRequest"),
        data=ref("Order"),
    ),
    Endpoint(
        "GET",
        "/order/open",
        "read",
        lambda c: c.exchange.open_orders(c.user_id, c.query.text("symbol"), *c.query.paging()),
        "Open and partially filled orders, paged",
        params=(_USER, _SYMBOL, *_PAGING),
        data=page_of("Order"),
    ),
    Endpoint(
        "POST",
        "/order/cancel",
        "trade",
        lambda c: c.exchange.cancel_order(c.user_id, c.body),
        "Cancel one order",
        body={
            "type": "object",
            "required": ["orderId"],
            "properties": {"orderId": {"type": "string"}},
        },
        data=ref("Order"),
    ),
    Endpoint(
        "POST",
        "/order/cancelAll",
        "trade",
        lambda c: c.exchange.cancel_all(c.user_id, c.body),
        "Cancel every open order of the user, optionally of one symbol",
        body={
            "type": "object",
            "required": ["userId"],
            "properties": {"userId": {"type": "string"}, "symbol": {"type": "string"}},
        },
        data={
            "type": "object",
            "required": ["cancelled", "count"],
            "properties": {
                "cancelled": {"type": "array", "items": {"type": "string"}},
                "count": {"type": "integer"},
            },
        },
    ),
    Endpoint(
        "GET",
        "/order/{order_id}",
        "read",
        lambda c: c.exchange.get_order(c.user_id, c.path_params["order_id"]),
        "One order of the key's user, any status",
        data=ref("Order"),
    ),
    Endpoint(
        "GET",
        "/positions",
        "read",
        lambda c: c.exchange.positions(c.user_id, c.query.text("symbol")),
        "Open positions",
        params=(_SYMBOL,),
        data=list_of("Position"),
    ),
    Endpoint(
        "POST",
        "/positions/{position_id}/leverage",
        "trade",
        lambda c: c.exchange.set_leverage(c.user_id, _position_id(c), c.body),
        "Set a position's leverage",
        body={
            "type": "object",
            "required": ["leverage"],
            "properties": {"leverage": {"type": "integer", "minimum": 1}},
        },
        data=ref("Position"),
    ),
    Endpoint(
        "POST",
        "/positions/{position_id}/margin",
        "trade",
        lambda c: c.exchange.adjust_margin(c.user_id, _position_id(c), c.body),
        "Add or reduce isolated margin",
        body={
            "type": "object",
            "required": ["mode", "amount"],
            "properties": {
                "mode": {"type": "string", "enum": ["add", "reduce"]},
                "amount": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            },
        },
        data=ref("Position"),
    ),
    Endpoint(
        "POST",
        "/positions/{position_id}/tpsl",
        "trade",
        lambda c: c.exchange.set_tpsl(c.user_id, _position_id(c), c.body),
        "Set or clear take-profit and stop-loss prices",
        body={
            "type": "object",
            "properties": {
                "takeProfitPrice": NULLABLE_NUMBER,
                "stopLossPrice": NULLABLE_NUMBER,
            },
        },
        data=ref("Position"),
    ),
    Endpoint(
        "POST",
        "/positions/{position_id}/close",
        "trade",
        lambda c: c.exchange.close_position(c.user_id, _position_id(c)),
        "Market-close the whole position",
        data=ref("Order"),
    ),
    Endpoint(
        "GET",
        "/wallet/account-overview",
        "read",
        lambda c: c.exchange.account_overview(c.user_id),
        "Balances of the key's user",
        data=ref("AccountOverview"),
    ),
    Endpoint(
        "GET",
        "/wallet/balance-history",
        "read",
        lambda c: c.exchange.balance_history(c.user_id, c.query.bounded("days", 7, 1, 365)),
        "Ledger entries of the last `days`, oldest first",
        params=(Param("days", {"type": "integer", "minimum": 1, "maximum": 365, "default": 7}),),
        data=list_of("BalanceEntry"),
    ),
    Endpoint(
        "GET",
        "/trade/user/{user_id}",
        "read",
        lambda c: c.exchange.user_trades(c.user_id, c.query.text("symbol"), *c.query.paging()),
        "Fills of the key's user, paged",
        params=(_SYMBOL, *_PAGING),
        data=page_of("Trade"),
    ),
    Endpoint(
        "GET",
        "/trade/order/{order_id}",
        "read",
        lambda c: c.exchange.order_trades(c.user_id, c.path_params["order_id"], *c.query.paging()),
        "Fills of one order, paged",
        params=_PAGING,
        data=page_of("Trade"),
    ),
)


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the served `/api/v1`, built from `ENDPOINTS`."""
    return openapi_document(ENDPOINTS, API_PREFIX)
