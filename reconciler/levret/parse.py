"""Raw Levret answers -> the models the reconciler consumes, one parser per entity.

Each parser says, by what it requires, which fields the reconciler needs; everything else may
be missing or null (a fill without `orderId` is a liquidation or close fill, an order may come
without timestamps, a symbol without `baseAsset`). Lists may come plain or under a common
container name; pages may carry `page`/`pageSize`/`total` at the top, in a pagination object,
or not at all (a plain list is one complete page).

`read_one`, `read_list` and `read_page` return a `Parsed`: the value, plus the entities as
read and the container found, which `reconciler doctor` reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from reconciler.levret.fields import Entity, WireFormatError, masked_shape, normal_name
from reconciler.model.account import (
    AccountOverview,
    BalanceEntry,
    CancelAllResult,
    Candle,
    MarketStats,
    Order,
    OrderBook,
    Page,
    Position,
    SymbolSpec,
    Trade,
)

__all__ = [
    "PARSERS",
    "Parsed",
    "account_overview",
    "balance_entry",
    "cancel_all_result",
    "candle",
    "market_stats",
    "order",
    "order_book",
    "position",
    "read_list",
    "read_one",
    "read_page",
    "symbol_spec",
    "trade",
]

T = TypeVar("T")
Reader = Callable[[Entity], T]

LIST_CONTAINERS = ("items", "list", "rows", "data", "records", "results", "result", "content")
PAGINATION_OBJECTS = ("pagination", "paging", "pageInfo", "meta")

SIDES = {"buy": "buy", "sell": "sell"}
ORDER_TYPES = {"market": "market", "limit": "limit"}
ORDER_STATUSES = {
    "open": "open",
    "new": "open",
    "partiallyfilled": "partially_filled",
    "partial": "partially_filled",
    "filled": "filled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "rejected": "rejected",
}
POSITION_SIDES = {"long": "long", "short": "short"}
MARGIN_MODES = {"isolated": "isolated"}
SYMBOL_STATUSES = {"trading": "trading", "halted": "halted"}
LIQUIDITY = {"maker": "maker", "taker": "taker"}
LEDGER_TYPES = {
    "deposit": "deposit",
    "fee": "fee",
    "realizedpnl": "realized_pnl",
    "liquidation": "liquidation",
}


@dataclass
class Parsed(Generic[T]):
    """A parsed answer, with what was found on the way (for `reconciler doctor`)."""

    value: T
    entities: list[Entity] = field(default_factory=list)
    container: str = "object"


# --------------------------------------------------------------------- entities


def symbol_spec(e: Entity) -> SymbolSpec:
    name = e.text("symbol", "name")
    e.ident = name
    return SymbolSpec(
        symbol=name,
        baseAsset=e.text("baseAsset", "base", required=False) or "",
        quoteAsset=e.text("quoteAsset", "quote", required=False) or "USDT",
        tickSize=e.decimal("tickSize", "priceTick", "priceIncrement"),
        stepSize=e.decimal("stepSize", "sizeStep", "lotSize", "qtyStep"),
        minSize=e.decimal("minSize", "minQty", "minOrderSize"),
        maxLeverage=e.integer("maxLeverage"),
        status=e.choice("status", SYMBOL_STATUSES, required=False) or "trading",
    )


def market_stats(e: Entity) -> MarketStats:
    name = e.text("symbol")
    e.ident = name
    return MarketStats(
        symbol=name,
        markPrice=e.decimal("markPrice", "mark"),
        lastPrice=e.decimal("lastPrice", "last", required=False),
        high24h=e.decimal("high24h", required=False),
        low24h=e.decimal("low24h", required=False),
        volume24h=e.decimal("volume24h", required=False),
        change24h=e.decimal("change24h", required=False),
        fundingRate=e.decimal("fundingRate", required=False),
        nextFundingTime=e.time_ms("nextFundingTime", required=False),
    )


def _levels(e: Entity, side: str) -> list[tuple[Decimal, Decimal]]:
    raw = e.nested(side)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise e.fail(side, [side], "list of [price, size] or {price, size}", "is not a list")
    levels = []
    for number, level in enumerate(raw):
        if isinstance(level, list | tuple):
            pair = dict(zip(("price", "size"), level, strict=False))
            inner = Entity(e.endpoint, pair, kind=f"{side} level")
        else:
            inner = Entity(e.endpoint, level, kind=f"{side} level")
        inner.index = number
        levels.append((inner.decimal("price", "px"), inner.decimal("size", "qty", "quantity")))
    return levels


def order_book(e: Entity) -> OrderBook:
    return OrderBook(
        symbol=e.text("symbol", required=False) or "",
        bids=_levels(e, "bids"),
        asks=_levels(e, "asks"),
        timestamp=e.time_ms("timestamp", "time", "ts", required=False) or 0,
    )


def candle(e: Entity) -> Candle:
    return Candle(
        openTime=e.time_ms("openTime", "time", "startTime"),
        open=e.decimal("open"),
        high=e.decimal("high"),
        low=e.decimal("low"),
        close=e.decimal("close"),
        volume=e.decimal("volume", required=False) or Decimal(0),
    )


def order(e: Entity) -> Order:
    ident = e.identity("orderId")
    created = e.time_ms("createdAt", "createTime", "createdTime", required=False)
    updated = e.time_ms("updatedAt", "updateTime", "updatedTime", required=False)
    return Order(
        id=ident,
        userId=e.text("userId", required=False) or "",
        symbol=e.text("symbol"),
        side=e.choice("side", SIDES),
        orderType=e.choice("orderType", ORDER_TYPES, "type"),
        size=e.decimal("size", "quantity", "qty"),
        price=e.decimal("price", required=False),
        leverage=e.integer("leverage", required=False),
        reduce_only=bool(e.boolean("reduceOnly", required=False)),
        takeProfit=e.decimal("takeProfit", "takeProfitPrice", required=False),
        stopLoss=e.decimal("stopLoss", "stopLossPrice", required=False),
        status=e.choice("status", ORDER_STATUSES, "state"),
        filledSize=e.decimal("filledSize", "filledQty", "executedQty", required=False)
        or Decimal(0),
        avgFillPrice=e.decimal("avgFillPrice", "avgPrice", "averagePrice", required=False),
        createdAt=created or 0,
        updatedAt=updated if updated is not None else created or 0,
    )


def cancel_all_result(e: Entity) -> CancelAllResult:
    raw = e.nested("cancelled", "canceled", "cancelledIds", "canceledIds", "orderIds")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise e.fail(
            "cancelled", ["cancelled", "canceled", "orderIds"], "list of ids", "is no list"
        )
    ids = []
    for number, item in enumerate(raw):
        if isinstance(item, str | int) and not isinstance(item, bool):
            ids.append(str(item))
        else:
            ids.append(
                Entity(e.endpoint, item, kind="cancelled order", index=number).identity("orderId")
            )
    count = e.integer("count", required=False)
    return CancelAllResult(cancelled=ids, count=len(ids) if count is None else count)


def position(e: Entity) -> Position:
    ident = e.identity("positionId")
    created = e.time_ms("createdAt", "createTime", "createdTime", required=False)
    updated = e.time_ms("updatedAt", "updateTime", "updatedTime", required=False)
    return Position(
        id=ident,
        userId=e.text("userId", required=False) or "",
        symbol=e.text("symbol"),
        side=e.choice("side", POSITION_SIDES, "positionSide"),
        size=e.decimal("size", "quantity", "qty"),
        entryPrice=e.decimal("entryPrice", "avgEntryPrice", "entry"),
        markPrice=e.decimal("markPrice", "mark"),
        leverage=e.integer("leverage"),
        margin=e.decimal("margin", "isolatedMargin", "positionMargin"),
        marginMode=e.choice("marginMode", MARGIN_MODES, required=False) or "isolated",
        takeProfitPrice=e.decimal("takeProfitPrice", "takeProfit", required=False),
        stopLossPrice=e.decimal("stopLossPrice", "stopLoss", required=False),
        liquidationPrice=e.decimal("liquidationPrice", "liqPrice", required=False),
        unrealizedPnl=e.decimal("unrealizedPnl", required=False) or Decimal(0),
        createdAt=created or 0,
        updatedAt=updated if updated is not None else created or 0,
    )


def account_overview(e: Entity) -> AccountOverview:
    return AccountOverview(
        userId=e.text("userId", required=False) or "",
        currency=e.text("currency", "asset", required=False) or "USDT",
        deposits=e.decimal("deposits", required=False),
        walletBalance=e.decimal("walletBalance", required=False),
        availableBalance=e.decimal("availableBalance", "available", required=False),
        positionMargin=e.decimal("positionMargin", required=False),
        orderMargin=e.decimal("orderMargin", required=False),
        unrealizedPnl=e.decimal("unrealizedPnl", required=False),
        realizedPnl=e.decimal("realizedPnl", required=False),
        totalFees=e.decimal("totalFees", required=False),
        equity=e.decimal("equity", "totalEquity", "marginBalance"),
    )


def balance_entry(e: Entity) -> BalanceEntry:
    return BalanceEntry(
        time=e.time_ms("time", "timestamp", "createdAt"),
        type=e.choice("type", LEDGER_TYPES),
        amount=e.decimal("amount"),
        balance=e.decimal("balance"),
        symbol=e.text("symbol", required=False),
    )


def trade(e: Entity) -> Trade:
    ident = e.identity("tradeId")
    return Trade(
        id=ident,
        orderId=e.text("orderId", required=False),
        symbol=e.text("symbol"),
        side=e.choice("side", SIDES),
        size=e.decimal("size", "quantity", "qty"),
        price=e.decimal("price"),
        fee=e.decimal("fee", "commission", required=False),
        realizedPnl=e.decimal("realizedPnl", required=False),
        liquidity=e.choice("liquidity", LIQUIDITY, required=False) or "taker",
        timestamp=e.time_ms("timestamp", "time", "createdAt", required=False) or 0,
    )


PARSERS: dict[type[Any], Callable[[Entity], Any]] = {
    SymbolSpec: symbol_spec,
    MarketStats: market_stats,
    OrderBook: order_book,
    Candle: candle,
    Order: order,
    CancelAllResult: cancel_all_result,
    Position: position,
    AccountOverview: account_overview,
    BalanceEntry: balance_entry,
    Trade: trade,
}


# --------------------------------------------------------------------- containers


def _kind_of(reader: Reader[Any]) -> str:
    return reader.__name__.replace("_", " ")


def read_one(endpoint: str, data: Any, reader: Reader[T]) -> Parsed[T]:
    """One entity: the answer's `data` is the object itself."""
    entity = Entity(endpoint, data, kind=_kind_of(reader))
    return Parsed(reader(entity), [entity], "object")


def _items(endpoint: str, data: Any, kind: str) -> tuple[list[Any], str, Mapping[str, Any]]:
    """The list in an answer, where it was found, and the object around it (or empty)."""
    if isinstance(data, list):
        return data, "plain list", {}
    if isinstance(data, Mapping):
        by_name = {normal_name(str(key)): str(key) for key in data}
        for name in LIST_CONTAINERS:
            key = by_name.get(normal_name(name))
            if key is not None and isinstance(data[key], list):
                return data[key], f"list under {key!r}", data
        lists = [str(key) for key, value in data.items() if isinstance(value, list)]
        if len(lists) == 1:
            return data[lists[0]], f"list under {lists[0]!r}", data
    tried = ", ".join(LIST_CONTAINERS)
    present = ", ".join(str(key) for key in data) if isinstance(data, Mapping) else "none"
    raise WireFormatError(
        endpoint,
        f"answer: no list of {kind}s (tried a plain list and an object with one of {tried}; "
        f"present: {present})",
        shape=masked_shape(data),
    )


def read_list(endpoint: str, data: Any, reader: Reader[T]) -> Parsed[list[T]]:
    """A list of entities, plain or under a common container name."""
    kind = _kind_of(reader)
    raw, container, _ = _items(endpoint, data, kind)
    entities = [Entity(endpoint, item, kind=kind, index=index) for index, item in enumerate(raw)]
    return Parsed([reader(entity) for entity in entities], entities, container)


def read_page(endpoint: str, data: Any, reader: Reader[T]) -> Parsed[Page[T]]:
    """One page: numbers at the top, in a pagination object, or none (a complete list)."""
    kind = _kind_of(reader)
    raw, container, around = _items(endpoint, data, kind)
    entities = [Entity(endpoint, item, kind=kind, index=index) for index, item in enumerate(raw)]
    items = [reader(entity) for entity in entities]
    holder: Mapping[str, Any] = around
    where = "at the top"
    for name in PAGINATION_OBJECTS:
        key = {normal_name(str(k)): str(k) for k in around}.get(normal_name(name))
        if key is not None and isinstance(around[key], Mapping):
            holder, where = around[key], f"in {key!r}"
            break
    numbers = Entity(endpoint, holder, kind="pagination")
    numbers.looked.update(normal_name(str(key)) for key in around)  # the list, the pagination
    total = numbers.integer("total", "totalCount", "totalItems", "count", required=False)
    if total is None:
        # No pagination: the list is all there is, in one page.
        page = Page[Any](items=items, page=1, pageSize=max(len(items), 1), total=len(items))
        return Parsed(page, [*entities, numbers], f"{container}, no pagination")
    page_no = numbers.integer("page", "pageNumber", "currentPage", required=False)
    size = numbers.integer("pageSize", "perPage", "limit")
    if total < 0 or size < 1:
        raise numbers.fail(
            "pageSize", ["pageSize", "total"], "positive integers", "is out of range"
        )
    result = Page[Any](items=items, page=page_no or 1, pageSize=size, total=total)
    return Parsed(result, [*entities, numbers], f"{container}, pagination {where}")
