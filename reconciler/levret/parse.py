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
from reconciler.model.snapshot import BookTop, Snapshot

__all__ = [
    "PARSERS",
    "Parsed",
    "ReadItems",
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
    "snapshot",
    "symbol_spec",
    "trade",
    "wire",
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
        base_asset=e.text("baseAsset", "base", required=False) or "",
        quote_asset=e.text("quoteAsset", "quote", required=False) or "USDT",
        tick_size=e.decimal("tickSize", "priceTick", "priceIncrement"),
        step_size=e.decimal("stepSize", "sizeStep", "lotSize", "qtyStep"),
        min_size=e.decimal("minSize", "minQty", "minOrderSize"),
        max_leverage=e.integer("maxLeverage"),
        status=e.choice("status", SYMBOL_STATUSES, required=False) or "trading",
    )


def market_stats(e: Entity) -> MarketStats:
    name = e.text("symbol")
    e.ident = name
    return MarketStats(
        symbol=name,
        mark_price=e.decimal("markPrice", "mark"),
        last_price=e.decimal("lastPrice", "last", required=False),
        high24h=e.decimal("high24h", required=False),
        low24h=e.decimal("low24h", required=False),
        volume24h=e.decimal("volume24h", required=False),
        change24h=e.decimal("change24h", required=False),
        funding_rate=e.decimal("fundingRate", required=False),
        next_funding_time=e.time_ms("nextFundingTime", required=False),
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
        open_time=e.time_ms("openTime", "time", "startTime"),
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
        user_id=e.text("userId", required=False) or "",
        symbol=e.text("symbol"),
        side=e.choice("side", SIDES),
        order_type=e.choice("orderType", ORDER_TYPES, "type"),
        size=e.decimal("size", "quantity", "qty"),
        price=e.decimal("price", required=False),
        leverage=e.integer("leverage", required=False),
        reduce_only=bool(e.boolean("reduceOnly", required=False)),
        take_profit=e.decimal("takeProfit", "takeProfitPrice", required=False),
        stop_loss=e.decimal("stopLoss", "stopLossPrice", required=False),
        status=e.choice("status", ORDER_STATUSES, "state"),
        filled_size=e.decimal("filledSize", "filledQty", "executedQty", required=False)
        or Decimal(0),
        avg_fill_price=e.decimal("avgFillPrice", "avgPrice", "averagePrice", required=False),
        created_at=created or 0,
        updated_at=updated if updated is not None else created or 0,
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
        user_id=e.text("userId", required=False) or "",
        symbol=e.text("symbol"),
        side=e.choice("side", POSITION_SIDES, "positionSide"),
        size=e.decimal("size", "quantity", "qty"),
        entry_price=e.decimal("entryPrice", "avgEntryPrice", "entry"),
        mark_price=e.decimal("markPrice", "mark"),
        leverage=e.integer("leverage"),
        margin=e.decimal("margin", "isolatedMargin", "positionMargin"),
        margin_mode=e.choice("marginMode", MARGIN_MODES, required=False) or "isolated",
        take_profit_price=e.decimal("takeProfitPrice", "takeProfit", required=False),
        stop_loss_price=e.decimal("stopLossPrice", "stopLoss", required=False),
        liquidation_price=e.decimal("liquidationPrice", "liqPrice", required=False),
        unrealized_pnl=e.decimal("unrealizedPnl", required=False) or Decimal(0),
        created_at=created or 0,
        updated_at=updated if updated is not None else created or 0,
    )


def account_overview(e: Entity) -> AccountOverview:
    return AccountOverview(
        user_id=e.text("userId", required=False) or "",
        currency=e.text("currency", "asset", required=False) or "USDT",
        deposits=e.decimal("deposits", required=False),
        wallet_balance=e.decimal("walletBalance", required=False),
        available_balance=e.decimal("availableBalance", "available", required=False),
        position_margin=e.decimal("positionMargin", required=False),
        order_margin=e.decimal("orderMargin", required=False),
        unrealized_pnl=e.decimal("unrealizedPnl", required=False),
        realized_pnl=e.decimal("realizedPnl", required=False),
        total_fees=e.decimal("totalFees", required=False),
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
        order_id=e.text("orderId", required=False),
        symbol=e.text("symbol"),
        side=e.choice("side", SIDES),
        size=e.decimal("size", "quantity", "qty"),
        price=e.decimal("price"),
        fee=e.decimal("fee", "commission", required=False),
        realized_pnl=e.decimal("realizedPnl", required=False),
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


class ReadItems:
    """Items already read, by their exact raw form: a second walk of a listing (apply reads
    the open orders before its first call and again after its last) finds most of them
    unchanged, and reading one is a pure function of its raw object, so the same object is
    handed back instead of read again. The raw form is the keys and the `repr` of each
    value, so `1`, `1.0`, `"1"` and `true` are four forms, as they are to the readers.
    Bounded, the oldest going first: 4,096 orders' forms take about 5 MB, and an account with
    more open orders than that reads every one of them each time."""

    def __init__(self, size: int = 4_096) -> None:
        self._size = size
        self._read: dict[tuple[Any, ...], Any] = {}
        self._aside: list[tuple[Reader[Any], Entity]] = []

    def item(self, reader: Reader[T], entity: Entity) -> T:
        raw = entity.raw
        key = (reader, tuple(raw), tuple(map(repr, raw.values())))
        known = self._read.get(key)
        if known is None:
            known = self._read[key] = reader(entity)
            if len(self._read) > self._size:
                del self._read[next(iter(self._read))]
        item: T = known
        return item

    def put_aside(self, reader: Reader[Any], entities: list[Entity]) -> None:
        """Items a narrowed walk passed over, to be read when there is time (`read_aside`):
        the next whole walk of the listing then finds them read."""
        self._aside.extend((reader, entity) for entity in entities)
        del self._aside[: max(0, len(self._aside) - self._size)]

    def read_aside(self, count: int) -> bool:
        """Read up to `count` of the items put aside; whether any are left. One that cannot
        be read, for whatever reason, is dropped: the walk that wants it reads it, and meets
        the error, itself."""
        batch, self._aside[:count] = self._aside[:count], []
        for reader, entity in batch:
            try:
                self.item(reader, entity)
            except Exception:  # not this reader's to report: see above
                continue
        return bool(self._aside)


def read_page(
    endpoint: str,
    data: Any,
    reader: Reader[T],
    *,
    read_before: ReadItems | None = None,
    keep: Callable[[Entity], bool] | None = None,
) -> Parsed[Page[T]]:
    """One page: numbers at the top, in a pagination object, or none (a complete list).

    With `read_before`, an item whose raw object was read before is taken from there (its
    entity is still made and listed, but none of its fields is read again). With `keep`, only
    the items it keeps are read (it looks at a field or two of each entity); the page's
    `listed` still counts them all, and `read_before` is given the others to read later."""
    kind = _kind_of(reader)
    raw, container, around = _items(endpoint, data, kind)
    entities = [Entity(endpoint, item, kind=kind, index=index) for index, item in enumerate(raw)]
    kept = entities
    if keep is not None:
        kept = []
        passed_over: list[Entity] = []
        for entity in entities:
            (kept if keep(entity) else passed_over).append(entity)
        if read_before is not None:
            read_before.put_aside(reader, passed_over)
    if read_before is None:
        items = [reader(entity) for entity in kept]
    else:
        items = [read_before.item(reader, entity) for entity in kept]
    listed = None if keep is None else len(entities)
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
        count = len(entities)
        page = Page[Any](items=items, page=1, page_size=max(count, 1), total=count, listed=listed)
        return Parsed(page, [*entities, numbers], f"{container}, no pagination")
    page_no = numbers.integer("page", "pageNumber", "currentPage", required=False)
    size = numbers.integer("pageSize", "perPage", "limit")
    if total < 0 or size < 1:
        raise numbers.fail(
            "pageSize", ["pageSize", "total"], "positive integers", "is out of range"
        )
    result = Page[Any](items=items, page=page_no or 1, page_size=size, total=total, listed=listed)
    return Parsed(result, [*entities, numbers], f"{container}, pagination {where}")


def wire(reader: Reader[T], raw: Any, *, endpoint: str = "payload") -> T:
    """One entity from a raw JSON object: the domain model `reader` makes of it."""
    return read_one(endpoint, raw, reader).value


def snapshot(data: Any) -> Snapshot:
    """A snapshot from plain data shaped like the API's payloads (the goldens' `live.json`).

    `{"user_id", "specs": [spec...], "positions": [position...], "open_orders": [order...],
    "marks": {symbol: price}, "books": {symbol: {"bid", "ask"}}, "equity": number|null}`:
    lists as the exchange returns them, read by the same parsers as a live answer and
    grouped here by symbol.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a snapshot must be a JSON object")
    specs = read_list("snapshot specs", data.get("specs", []), symbol_spec).value
    positions = read_list("snapshot positions", data.get("positions", []), position).value
    orders: dict[str, list[Order]] = {}
    for item in read_list("snapshot open_orders", data.get("open_orders", []), order).value:
        orders.setdefault(item.symbol, []).append(item)
    return Snapshot(
        user_id=str(data["user_id"]),
        specs={spec.symbol: spec for spec in specs},
        positions={held.symbol: held for held in positions},
        open_orders={symbol: tuple(items) for symbol, items in orders.items()},
        marks={str(k): Decimal(v) for k, v in (data.get("marks") or {}).items()},
        books={str(k): BookTop.model_validate(v) for k, v in (data.get("books") or {}).items()},
        equity=Decimal(data["equity"]) if data.get("equity") is not None else None,
    )
