"""`LevretClient`: every documented endpoint, over the signed core (`levret.transport`).

The SDK methods build each endpoint's path, query and body and read its answer into the
domain (`reconciler.levret.parse`); `execute` carries out a plan's intent by its exact call
(`reconciler.levret.requests`), retried as the intent's class allows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from reconciler.levret.ahead import ReadsAhead
from reconciler.levret.endpoints import answer_for, endpoint_label
from reconciler.levret.errors import (
    InvalidRequest,
    OutcomeUnknown,
    UnstableListing,
)
from reconciler.levret.fields import Entity, WireFormatError
from reconciler.levret.parse import PARSERS, ReadItems, read_list, read_one, read_page
from reconciler.levret.ratelimit import Sleep
from reconciler.levret.requests import request_for
from reconciler.levret.settings import ClientSettings
from reconciler.levret.transport import SignedTransport
from reconciler.model.account import (
    AccountOverview,
    BalanceEntry,
    CancelAllResult,
    Candle,
    MarketStats,
    Order,
    OrderBook,
    OrderSide,
    OrderType,
    Page,
    Position,
    SymbolSpec,
    Trade,
)
from reconciler.model.intents import Answer, Intent, RetryClass
from reconciler.model.intents import retry_class as intent_retry_class
from reconciler.model.plan import Request

__all__ = ["UNCHANGED", "CandleInterval", "LevretClient", "Number", "Unchanged"]

log = logging.getLogger("reconciler.levret")

Number = Decimal | int | str
CandleInterval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

_MAX_PAGE_RESTARTS = 3
# Items a narrowed walk passed over are read in the background this many at a time (about a
# millisecond of the event loop), with this pause between (see `_read_aside`).
_ASIDE_BATCH = 25
_ASIDE_PAUSE_S = 0.002
# Pages of one listing read at once, after the first (which tells how many there are).
PAGES_AT_ONCE = 16
OPEN_ORDERS_PAGE_SIZE = 100
# The listing key (see `_walk`) of the account's whole list of open orders.
_ALL_OPEN_ORDERS = ("open orders", None, OPEN_ORDERS_PAGE_SIZE)


class Unchanged(Enum):
    """Type of `UNCHANGED`: leave a take-profit or stop-loss as it is (key absent)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def _segment(value: str) -> str:
    """One path segment (an id), encoded so it cannot add segments or a query."""
    text = str(value)
    if not text:
        raise InvalidRequest("an id in the path must not be empty")
    return quote(text, safe="")


def _decimal(value: Number) -> Decimal:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise InvalidRequest(f"not a finite number: {value!r}")
    return number


def _reader(model: type[M]) -> Callable[[Entity], M]:
    """The `reconciler.levret` parser that builds `model` from a raw entity."""
    return PARSERS[model]


def _parsed(parse: Callable[[], R]) -> R:
    """Run a `reconciler.levret` parser; an unreadable answer is the exchange's fault.

    The parser's error is one line without values; the masked raw shape of the entity goes
    to the log (`-v`). For a mutation that already executed, the caller's `classify` then
    says UNKNOWN, which is the truth: it ran, and the answer cannot be read.
    """
    try:
        return parse()
    except WireFormatError as exc:
        log.info("%s: the entity as received, values masked: %s", exc.endpoint, exc.shape)
        raise


class LevretClient(SignedTransport):
    """Async client for the Levret REST API; use as `async with LevretClient(settings) as c`."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, transport=transport, sleep=sleep, wall=wall)
        # How many pages each listing had when it was last walked (see `_walk`).
        self._pages_seen: dict[Hashable, int] = {}
        self._market_ahead = ReadsAhead()
        # Listed items already read, by raw form (`parse.ReadItems`): a second walk of the
        # open orders reads only those that changed.
        self._read_items = ReadItems()
        self._reading_aside: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        self._market_ahead.close()
        if self._reading_aside is not None:
            self._reading_aside.cancel()
            self._reading_aside = None
        await super().aclose()

    def expect_open_orders(self, count: int) -> None:
        """Say how many open orders the account held when last read elsewhere (a plan's
        read), so that the first walk of them here reads their pages together with page 1,
        as a second walk would (`_walk`). Only a hint: a wrong count costs a round trip (too
        few) or one batch of empty pages (too many), never an order missed."""
        listing = _ALL_OPEN_ORDERS
        if count > 0 and listing not in self._pages_seen:
            self._pages_seen[listing] = math.ceil(count / OPEN_ORDERS_PAGE_SIZE)

    def read_market_ahead(self, *, stats: Iterable[str] = ()) -> None:
        """Start the public reads of the marks of `stats` now, for a reader that will ask for
        them shortly (`reconciler.levret.ahead`): its call then takes the answer, if it is
        still fresh, instead of waiting a round trip for it."""
        for symbol in stats:
            self._market_ahead.start(("stats", symbol), self._read_market_stats(symbol))

    # ------------------------------------------------------------------ generic sending

    async def send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send a planned request verbatim and return the envelope's `data`.

        `path` is below the API prefix (`/positions/7/tpsl`) and may carry its query. The
        retry class comes from the method and path. A settles call whose retry found the work
        already done returns `None`. The answer of a documented write is read by its
        `reconciler.levret.parse` parser into its domain model, whatever form the exchange
        wrote it in (other answers come as written); an executed write whose answer cannot
        be read raises `OutcomeUnknown`. Raises a `LevretError` (see `apply.outcome`).
        """
        method = method.upper()
        if method not in ("GET", "POST"):
            raise InvalidRequest(f"unsupported method {method}")
        if not path.startswith("/") or "{" in path or "}" in path or "#" in path:
            raise InvalidRequest(f"path must be a concrete path below the API prefix: {path!r}")
        return await self._sent(method, path, body)

    def request_for(self, intent: Intent) -> Request:
        """The exact call of `intent` for this client's user (see `reconciler.levret.requests`)."""
        return request_for(intent, user_id=self.user_id)

    async def execute(self, intent: Intent) -> Answer:
        """Carry out one intent: send its exact call, retried as its class allows, and read the
        answer into the domain (`Order`, `Position`, `CancelAllResult`; `None` when a retry of
        a settling call found the work done). An executed call whose answer cannot be read
        raises `OutcomeUnknown`; any failure raises a `LevretError` (`outcome.classify`).
        """
        if intent.on_new_position:
            raise InvalidRequest(f"{intent.kind} names the new position, whose id is not known")
        position_id = getattr(intent, "position_id", None)
        if position_id is not None and quote(position_id, safe="") != position_id:
            # An id (from the exchange, or an edited plan) that would change the endpoint.
            raise InvalidRequest(f"{intent.kind}: position id {position_id!r} is no path segment")
        request = self.request_for(intent)
        kind = intent_retry_class(intent)
        answer: Answer = await self._sent(request.method, request.path, request.body, kind)
        return answer

    async def _sent(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        kind: RetryClass | None = None,
    ) -> Any:
        """Send one call; a documented write's answer is read into its domain model."""
        data = await self._call(method, path, body=body, kind=kind)
        answer = answer_for(method, path)
        if data is None or answer is None or answer.shape != "one" or method != "POST":
            return data
        label = endpoint_label(method, path)
        return self._executed(
            method, path, body, lambda: read_one(label, data, answer.reader)
        ).value

    def _executed(
        self, method: str, path: str, body: Mapping[str, Any] | None, parse: Callable[[], R]
    ) -> R:
        """Parse the answer of a call; for an executed write, unreadable means unknown."""
        try:
            return _parsed(parse)
        except WireFormatError as exc:
            if method != "POST":
                raise
            raise OutcomeUnknown(
                f"executed but {exc.message}; look it up",
                method=method,
                path=path,
                body=None if body is None else dict(body),
                sent_at_ms=self.clock.local_ms(),
                code=exc.code,
            ) from exc

    async def read_raw(self, path: str, query: Mapping[str, object] | None = None) -> Any:
        """A read's `data` as the exchange wrote it (`reconciler doctor` inspects its shape)."""
        return await self._call("GET", path, query=query)

    async def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        data = await self._call(method, path, **kw)
        return self._one(model, method, path, data, kw.get("body"))

    def _one(
        self, model: type[M], method: str, path: str, data: Any, body: Mapping[str, Any] | None
    ) -> M:
        label = endpoint_label(method, path)
        parsed = self._executed(method, path, body, lambda: read_one(label, data, _reader(model)))
        return parsed.value

    async def _models(self, model: type[M], path: str, **kw: Any) -> list[M]:
        data = await self._call("GET", path, **kw)
        label = endpoint_label("GET", path)
        return _parsed(lambda: read_list(label, data, _reader(model))).value

    async def _page(
        self,
        model: type[M],
        path: str,
        query: Mapping[str, object],
        keep: Callable[[Entity], bool] | None = None,
    ) -> Page[M]:
        data = await self._call("GET", path, query=query)
        label = endpoint_label("GET", path)
        reader = _reader(model)
        return _parsed(
            lambda: read_page(label, data, reader, read_before=self._read_items, keep=keep)
        ).value

    async def _walk(
        self,
        fetch: Callable[[int], Coroutine[Any, Any, Page[M]]],
        id_of: Callable[[M], str],
        listing: Hashable | None = None,
    ) -> AsyncIterator[M]:
        """Yield every item of every page, each once.

        The first page tells how many pages there are; the others are then read concurrently,
        `PAGES_AT_ONCE` at a time, so 1,100 open orders take two round trips, not eleven one
        after another. A `listing` walked before (apply reads the open orders before its
        first call and again after its last) reads as many pages as it had last time, and
        one more, together with the first: one round trip where the second walk finds up to
        a page more (apply's placements grow the listing); a page past the end costs one
        empty read. A batch with an empty page ends the walk, so a
        wrong `total` cannot send more than one batch beyond the items.

        Items are sorted oldest first, so new ones append to the last page; but an item that
        leaves the set (an order filled mid-walk) shifts the later ones back by one and one
        would be skipped. Every page the first one's total spans must therefore report that
        total; if one does not, the walk starts again, and if the total keeps changing
        `UnstableListing` is raised rather than a list that may lack an item. A page read
        beyond that span only has to be empty: its own total tells of a change before or
        after the pages that hold the items, which the walk that never read it would not
        have seen either (a read ahead must not make a walk fail where one without it would
        have passed).
        """
        seen_before = self._pages_seen.get(listing) if listing is not None else None
        expected = 1 if seen_before is None else seen_before + 1
        for _attempt in range(_MAX_PAGE_RESTARTS + 1):
            pages = await _all_pages(fetch, expected)
            if _consistent(pages):
                break
        else:
            raise UnstableListing(
                f"the listing changed between page reads {_MAX_PAGE_RESTARTS + 1} times"
            )
        first = pages[0]
        if listing is not None and first.page_size > 0:
            self._pages_seen[listing] = math.ceil(first.total / first.page_size)
        seen: set[str] = set()
        for page in pages:
            for item in page.items:
                key = id_of(item)
                if key not in seen:
                    seen.add(key)
                    yield item

    # ------------------------------------------------------------------ market (public)

    async def supported_symbols(self) -> list[SymbolSpec]:
        return await self._models(SymbolSpec, "/market/supported-symbols")

    async def market_stats(self, symbol: str) -> MarketStats:
        key = ("stats", symbol)
        return await self._market_ahead.take(key, lambda: self._read_market_stats(symbol))

    async def _read_market_stats(self, symbol: str) -> MarketStats:
        return await self._model(
            MarketStats, "GET", "/market/market-stats", query={"symbol": symbol}
        )

    async def all_market_stats(self) -> list[MarketStats]:
        return await self._models(MarketStats, "/market/market-stats")

    async def orderbook(self, symbol: str, depth: int = 50) -> OrderBook:
        return await self._model(
            OrderBook, "GET", "/market/orderbook", query={"symbol": symbol, "depth": depth}
        )

    async def candles(
        self, symbol: str, interval: CandleInterval = "1m", limit: int = 500
    ) -> list[Candle]:
        query = {"symbol": symbol, "interval": interval, "limit": limit}
        return await self._models(Candle, "/market/candles", query=query)

    # ------------------------------------------------------------------ orders

    async def create_order(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        size: Number,
        *,
        price: Number | None = None,
        leverage: int | None = None,
        reduce_only: bool = False,
        take_profit: Number | None = None,
        stop_loss: Number | None = None,
    ) -> Order:
        """Place an order (unsafe: never resent after an ambiguous failure)."""
        if order_type == "limit" and price is None:
            raise InvalidRequest("a limit order needs a price")
        body: dict[str, Any] = {
            "userId": self.user_id,
            "symbol": symbol,
            "side": side,
            "orderType": order_type,
            "size": _decimal(size),
        }
        if price is not None:
            body["price"] = _decimal(price)
        if leverage is not None:
            body["leverage"] = leverage
        body["reduce_only"] = reduce_only
        if take_profit is not None:
            body["takeProfit"] = _decimal(take_profit)
        if stop_loss is not None:
            body["stopLoss"] = _decimal(stop_loss)
        return await self._model(Order, "POST", "/order", body=body)

    async def open_orders(
        self,
        symbol: str | None = None,
        *,
        page: int = 1,
        page_size: int = 50,
        start_time: int | None = None,
        end_time: int | None = None,
        of_symbols: frozenset[str] | None = None,
    ) -> Page[Order]:
        """One page of open orders; with `of_symbols`, only theirs are read into `items` (the
        others' fields are never read: a narrowed read of a large account skips most of its
        cost), and `listed` counts the page's orders."""
        query = {
            "userId": self.user_id,
            "symbol": symbol,
            "page": page,
            "pageSize": page_size,
            "startTime": start_time,
            "endTime": end_time,
        }
        keep = None if of_symbols is None else _of_symbols(of_symbols)
        return await self._page(Order, "/order/open", query, keep)

    async def iter_open_orders(
        self,
        symbol: str | None = None,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        page_size: int = OPEN_ORDERS_PAGE_SIZE,
        of_symbols: frozenset[str] | None = None,
    ) -> AsyncIterator[Order]:
        """Every open order (of `of_symbols` only, if given), walking all pages to the end."""

        async def fetch(page: int) -> Page[Order]:
            return await self.open_orders(
                symbol,
                page=page,
                page_size=page_size,
                start_time=start_time,
                end_time=end_time,
                of_symbols=of_symbols,
            )

        listing = ("open orders", symbol, page_size) if start_time is end_time is None else None
        async for order in self._walk(fetch, lambda o: o.id, listing):
            yield order
        if of_symbols is not None and self._reading_aside is None:
            self._reading_aside = asyncio.create_task(self._read_aside())

    async def _read_aside(self) -> None:
        """Read the orders a narrowed walk passed over, a few at a time with a pause between,
        while the event loop has time: apply's first read reads only the symbols it acts on,
        and its verification walks the whole listing, which then reads only what changed (a
        quarter of its time at 100 symbols). The pauses keep each batch from holding up a
        call's answer by more than about a millisecond."""
        try:
            while True:
                if not self._read_items.read_aside(_ASIDE_BATCH):
                    return
                await asyncio.sleep(_ASIDE_PAUSE_S)  # pacing, not waiting for anything
        finally:
            self._reading_aside = None

    async def get_order(self, order_id: str) -> Order:
        return await self._model(Order, "GET", f"/order/{_segment(order_id)}")

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel one order (settles). If a retry finds it no longer open, the order is read
        back and returned as it now stands."""
        data = await self._call("POST", "/order/cancel", body={"orderId": order_id})
        if data is None:
            return await self.get_order(order_id)
        return self._one(Order, "POST", "/order/cancel", data, {"orderId": order_id})

    async def cancel_all(self, symbol: str | None = None) -> CancelAllResult:
        body: dict[str, Any] = {"userId": self.user_id}
        if symbol is not None:
            body["symbol"] = symbol
        data = await self._call("POST", "/order/cancelAll", body=body)
        if data is None:
            return CancelAllResult(cancelled=[], count=0)
        return self._one(CancelAllResult, "POST", "/order/cancelAll", data, body)

    # ------------------------------------------------------------------ positions

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return await self._models(Position, "/positions", query={"symbol": symbol})

    async def set_leverage(self, position_id: str, leverage: int) -> Position:
        path = f"/positions/{_segment(position_id)}/leverage"
        return await self._model(Position, "POST", path, body={"leverage": leverage})

    async def adjust_margin(
        self, position_id: str, mode: Literal["add", "reduce"], amount: Number
    ) -> Position:
        """Move isolated margin (unsafe: never resent after an ambiguous failure)."""
        path = f"/positions/{_segment(position_id)}/margin"
        body = {"mode": mode, "amount": _decimal(amount)}
        return await self._model(Position, "POST", path, body=body)

    async def set_tpsl(
        self,
        position_id: str,
        take_profit: Number | Unchanged | None = UNCHANGED,
        stop_loss: Number | Unchanged | None = UNCHANGED,
    ) -> Position:
        """Set take-profit / stop-loss: a price sets it, `None` clears it, `UNCHANGED` keeps."""
        body: dict[str, Any] = {}
        if not isinstance(take_profit, Unchanged):
            body["takeProfitPrice"] = None if take_profit is None else _decimal(take_profit)
        if not isinstance(stop_loss, Unchanged):
            body["stopLossPrice"] = None if stop_loss is None else _decimal(stop_loss)
        path = f"/positions/{_segment(position_id)}/tpsl"
        return await self._model(Position, "POST", path, body=body)

    async def close_position(self, position_id: str) -> Order | None:
        """Market-close a position (settles); `None` when a retry found it already gone."""
        path = f"/positions/{_segment(position_id)}/close"
        data = await self._call("POST", path)
        return None if data is None else self._one(Order, "POST", path, data, None)

    # ------------------------------------------------------------------ wallet and trades

    async def account_overview(self) -> AccountOverview:
        return await self._model(AccountOverview, "GET", "/wallet/account-overview")

    async def balance_history(self, days: int = 7) -> list[BalanceEntry]:
        return await self._models(BalanceEntry, "/wallet/balance-history", query={"days": days})

    async def user_trades(
        self,
        symbol: str | None = None,
        *,
        page: int = 1,
        page_size: int = 50,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> Page[Trade]:
        query = {
            "symbol": symbol,
            "page": page,
            "pageSize": page_size,
            "startTime": start_time,
            "endTime": end_time,
        }
        return await self._page(Trade, f"/trade/user/{_segment(self.user_id)}", query)

    async def iter_user_trades(
        self,
        symbol: str | None = None,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Trade]:
        async def fetch(page: int) -> Page[Trade]:
            return await self.user_trades(
                symbol, page=page, page_size=page_size, start_time=start_time, end_time=end_time
            )

        async for trade in self._walk(fetch, lambda t: t.id):
            yield trade

    async def order_trades(
        self,
        order_id: str,
        *,
        page: int = 1,
        page_size: int = 50,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> Page[Trade]:
        query = {
            "page": page,
            "pageSize": page_size,
            "startTime": start_time,
            "endTime": end_time,
        }
        return await self._page(Trade, f"/trade/order/{_segment(order_id)}", query)

    async def iter_order_trades(
        self,
        order_id: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Trade]:
        async def fetch(page: int) -> Page[Trade]:
            return await self.order_trades(
                order_id, page=page, page_size=page_size, start_time=start_time, end_time=end_time
            )

        async for trade in self._walk(fetch, lambda t: t.id):
            yield trade


async def _all_pages(
    fetch: Callable[[int], Coroutine[Any, Any, Page[M]]], expected_pages: int
) -> list[Page[M]]:
    """Page 1 (with the pages after it the listing had last time), then the rest its `total`
    announces, a batch of `PAGES_AT_ONCE` at a time; a batch with an empty page ends it."""
    pages = await _batch(fetch, range(1, min(max(expected_pages, 1), PAGES_AT_ONCE) + 1))
    first = pages[0]
    last = math.ceil(first.total / first.page_size) if first.page_size > 0 else 1
    number = len(pages) + 1
    while number <= last and all(page.held for page in pages):
        batch = range(number, min(last, number + PAGES_AT_ONCE - 1) + 1)
        pages.extend(await _batch(fetch, batch))
        number = batch.stop
    return pages


def _consistent(pages: Sequence[Page[M]]) -> bool:
    """Whether `pages` (page 1 first) read one listing: every page page 1's total spans
    reports that total, and every page beyond it is empty."""
    first = pages[0]
    span = max(1, math.ceil(first.total / first.page_size)) if first.page_size > 0 else 1
    spanned, beyond = pages[:span], pages[span:]
    return all(page.total == first.total for page in spanned) and not any(
        page.held for page in beyond
    )


def _of_symbols(symbols: frozenset[str]) -> Callable[[Entity], bool]:
    """Keeps an order of `symbols`, its symbol read as `parse.order` reads it (an order
    without one fails the read, kept or not, as it would unfiltered)."""

    def keep(entity: Entity) -> bool:
        return entity.text("symbol") in symbols

    return keep


async def _batch(
    fetch: Callable[[int], Coroutine[Any, Any, Page[M]]], numbers: range
) -> list[Page[M]]:
    """The pages `numbers`, read together, in order."""
    if len(numbers) == 1:
        return [await fetch(numbers[0])]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fetch(number)) for number in numbers]
    except ExceptionGroup as failed:
        # One failed read fails the walk with its own error, not a group of them.
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
