"""`LevretClient`: the signed, paced, retrying async client for every documented endpoint.

The reconciler moves money through this class, so each call is built once (path, query and
body bytes), paced, then signed afresh on every attempt and sent. What happens after a failure
depends on the call's retry class, chosen from the method and path:

safe
    Reads (`GET`), `POST /positions/:id/leverage` and `POST /positions/:id/tpsl` (they set
    absolute values, so doing them twice is doing them once). Retried with jittered backoff
    on 429, 5xx, timeouts and connection errors, up to `max_attempts` sends.
settles
    `POST /order/cancel`, `POST /order/cancelAll`, `POST /positions/:id/close`. Retried like
    safe calls; when a retry (after an attempt whose outcome was unknown) answers NOT_FOUND or
    ORDER_NOT_OPEN, the earlier attempt did the work, and the call counts as done.
unsafe
    `POST /order`, `POST /positions/:id/margin`, and any path not listed here. Doing them twice
    opens twice the risk, so they are resent only when the exchange certainly did not execute
    them: a 429, a connection that never opened (`ConnectError`, `ConnectTimeout`, a pool
    timeout), or a refused signature that is re-signed. After a read timeout, a 5xx or a
    dropped response they raise `OutcomeUnknown` carrying the request, after exactly one send.

Every class re-signs once after `SIGNATURE_EXPIRED`, `TIMESTAMP_IN_FUTURE` or
`REPLAYED_REQUEST`, having re-synchronised the server clock from the refusal itself; a second
refusal is raised. A mutating safe or settles call whose retries run out on an ambiguous
failure raises `OutcomeUnknown` too, so apply sees one of four outcomes (see `outcome.py`).

Logging goes to `reconciler.levret` at DEBUG: method, target, attempt `#n/N`, status, code
and latency. Headers, the signature and the secret are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from reconciler import jsonnum
from reconciler.levret.endpoints import answer_for, endpoint_label
from reconciler.levret.errors import (
    AuthError,
    InvalidRequest,
    LevretError,
    NotFound,
    OrderNotOpen,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
    UnstableListing,
    error_for_code,
)
from reconciler.levret.fields import Entity, WireFormatError, read_time_ms
from reconciler.levret.parse import PARSERS, read_list, read_one, read_page
from reconciler.levret.ratelimit import (
    HEADER_RETRY_AFTER,
    RateBudget,
    Sleep,
    Ticket,
    backoff_delay,
    parse_retry_after,
)
from reconciler.levret.requests import request_for
from reconciler.levret.settings import ClientSettings
from reconciler.levret.signing import LevretAuth, ServerClock
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

__all__ = [
    "UNCHANGED",
    "CandleInterval",
    "LevretClient",
    "Number",
    "RetryClass",
    "Unchanged",
    "encode_query",
    "retry_class",
]

log = logging.getLogger("reconciler.levret")

Number = Decimal | int | str
CandleInterval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

_RESYNC_CODES = frozenset({"SIGNATURE_EXPIRED", "TIMESTAMP_IN_FUTURE", "REPLAYED_REQUEST"})
# Exceptions after which the request certainly never reached the exchange.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_PAGE_RESTARTS = 3


class Unchanged(Enum):
    """Type of `UNCHANGED`: leave a take-profit or stop-loss as it is (key absent)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def retry_class(method: str, path: str) -> RetryClass:
    """The retry class of a raw call (`send`), from its method and its path below the API prefix.

    An intent's call takes its class from the intent itself (`execute`); this reading of
    the path serves the SDK-style methods and `send`, where no intent is at hand.
    """
    if method.upper() == "GET":
        return RetryClass.SAFE
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts in (["order", "cancel"], ["order", "cancelAll"]):
        return RetryClass.SETTLES
    if len(parts) == 3 and parts[0] == "positions":
        if parts[2] in ("leverage", "tpsl"):
            return RetryClass.SAFE
        if parts[2] == "close":
            return RetryClass.SETTLES
    return RetryClass.UNSAFE


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return jsonnum.decimal_text(value)
    return str(value)


def encode_query(params: Mapping[str, object]) -> str:
    """`k=v&...` in the given order, `None` values left out, everything but RFC 3986
    unreserved characters percent-encoded (space is `%20`, `+` is `%2B`, `@` is `%40`).

    Fully encoding means `httpx` has nothing left to normalise, so the target signed is the
    target sent.
    """
    return "&".join(
        f"{quote(str(key), safe='')}={quote(_query_text(value), safe='')}"
        for key, value in params.items()
        if value is not None
    )


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


def _reader(model: type[M]) -> Callable[[Entity], M]:
    """The `reconciler.levret` parser that builds `model` from a raw entity."""
    return PARSERS[model]


def _envelope_ms(value: object) -> int | None:
    """The envelope's `timestamp` in ms, in whichever time form the exchange writes it."""
    read = read_time_ms(value)
    return None if read is None else read[0]


@dataclass(frozen=True)
class LastAnswer:
    """What the last response said about the exchange itself, for `reconciler doctor`.

    Only the headers about time and the rate limit are kept; never an auth header.
    """

    status: int
    headers: dict[str, str]
    envelope_timestamp: Any
    sent_ms: int
    received_ms: int


_KEPT_HEADERS = (
    "date",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)


@dataclass
class _Call:
    """One logical call: the bytes built once, and what its attempts have learnt."""

    method: str
    path: str  # below the API prefix, query included, as given to `send`
    target: str  # what goes on the wire: prefix + path + query
    content: bytes
    body: Any
    signed: bool
    kind: RetryClass
    attempts: int
    number: int = 0
    resynced: bool = False
    ambiguous: bool = False  # an earlier attempt may have executed
    sent_at_ms: int = 0


class LevretClient:
    """Async client for the Levret REST API; use as `async with LevretClient(settings) as c`.

    `transport` replaces the network (tests pass `httpx.MockTransport`); `sleep` and `wall`
    replace `asyncio.sleep` and `time.time` so waits can be checked without waiting.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = ServerClock(wall)
        self._sleep = sleep
        self.budget = RateBudget(
            settings.window_limit,
            settings.rate_window_seconds,
            clock=self.clock,
            reserve=settings.rate_reserve,
            sleep=sleep,
        )
        self._auth = LevretAuth(
            settings.api_key_id,
            settings.api_key_secret,
            self.clock,
            exp_ms=settings.exp_ms,
            send_secret=settings.send_secret_header,
        )
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=settings.verify_tls,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.write_timeout,
                pool=settings.pool_timeout,
            ),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "reconciler-levret/0.1"},
        )
        self._secret_text = settings.api_key_secret.get_secret_value()
        self.last_answer: LastAnswer | None = None

    def __repr__(self) -> str:
        return (
            f"LevretClient(base_url={self.settings.base_url!r}, "
            f"key_id={self.settings.api_key_id!r}, user_id={self.settings.user_id!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def user_id(self) -> str:
        return self.settings.user_id

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
        data = await self._call(method, path, body=body)
        answer = answer_for(method, path)
        if data is None or answer is None or answer.shape != "one" or method != "POST":
            return data
        label = endpoint_label(method, path)
        return self._executed(
            method, path, body, lambda: read_one(label, data, answer.reader)
        ).value

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
        request = self.request_for(intent)
        method, path, body = request.method, request.path, request.body
        data = await self._call(method, path, body=body, kind=intent_retry_class(intent))
        answer = answer_for(method, path)
        if data is None or answer is None:
            return None
        label = endpoint_label(method, path)
        parsed = self._executed(method, path, body, lambda: read_one(label, data, answer.reader))
        value: Answer = parsed.value
        return value

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

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: Mapping[str, Any] | None = None,
        signed: bool | None = None,
        kind: RetryClass | None = None,
    ) -> Any:
        encoded = encode_query(query) if query else ""
        full_path = f"{path}?{encoded}" if encoded else path
        if signed is None:
            signed = not path.startswith("/market/")
        if kind is None:
            kind = retry_class(method, path)
        try:
            content = b"" if body is None else jsonnum.dumps(body)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"body cannot be encoded: {exc}") from exc
        call = _Call(
            method=method,
            path=full_path,
            target=self.settings.api_prefix + full_path,
            content=content,
            body=None if body is None else dict(body),
            signed=signed,
            kind=kind,
            attempts=self.settings.max_attempts,
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(call.attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: self._retryable(call, exc)),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(self._attempt, call)
        except LevretError as exc:
            # A mutation that may have executed on some attempt ends unknown, whatever the
            # last attempt said (unless a settles retry proved it done, which returns).
            if method == "POST" and call.ambiguous and not isinstance(exc, OutcomeUnknown):
                raise self._unknown(call, exc) from exc
            raise

    def _retryable(self, call: _Call, exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return True
        if isinstance(exc, TransportError):
            return not exc.sent or call.kind is not RetryClass.UNSAFE
        if isinstance(exc, ServerError):
            return call.kind is not RetryClass.UNSAFE
        return False

    def _wait(self, state: RetryCallState) -> float:
        delay = backoff_delay(
            state.attempt_number,
            initial=self.settings.backoff_initial,
            maximum=self.settings.backoff_max,
        )
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            # Honour Retry-After; the jitter spreads concurrent waiters over the reopening.
            return exc.retry_after + delay
        return delay

    def _unknown(self, call: _Call, exc: LevretError) -> OutcomeUnknown:
        return OutcomeUnknown(
            f"outcome unknown after {exc.message}; look it up before sending it again",
            method=call.method,
            path=call.path,
            body=call.body,
            sent_at_ms=call.sent_at_ms,
            status=exc.status,
            code=exc.code,
        )

    async def _attempt(self, call: _Call) -> Any:
        call.number += 1
        label = f"#{call.number}/{call.attempts}"
        while True:
            try:
                return await self._send_once(call, label)
            except AuthError as exc:
                if exc.code in _RESYNC_CODES and not call.resynced:
                    call.resynced = True
                    log.debug(
                        "%s %s %s: %s; clock offset now %d ms, re-signing once",
                        call.method,
                        call.target,
                        label,
                        exc.code,
                        self.clock.offset_ms,
                    )
                    continue
                raise
            except (NotFound, OrderNotOpen) as exc:
                if call.kind is RetryClass.SETTLES and call.ambiguous:
                    log.debug(
                        "%s %s %s: %s on retry, an earlier attempt did it: done",
                        call.method,
                        call.target,
                        label,
                        exc.code,
                    )
                    return None
                raise
            except (ServerError, TransportError) as exc:
                if not (isinstance(exc, TransportError) and not exc.sent):
                    call.ambiguous = True
                    if call.kind is RetryClass.UNSAFE:
                        raise self._unknown(call, exc) from exc
                raise

    async def _send_once(self, call: _Call, label: str) -> Any:
        """One send through the key's budget (a signed call) or past any hold (a public one)."""
        if not call.signed:
            await self.budget.hold()
            return await self._exchange(call, label, None)
        ticket = await self.budget.acquire()
        try:
            return await self._exchange(call, label, ticket)
        finally:
            self.budget.done(ticket)

    async def _exchange(self, call: _Call, label: str, ticket: Ticket | None) -> Any:
        headers = {"Content-Type": "application/json"} if call.content else {}
        request = self._http.build_request(
            call.method,
            self.settings.origin + call.target,
            content=call.content,
            headers=headers,
        )
        started = time.monotonic()
        sent_ms = self.clock.local_ms()
        call.sent_at_ms = sent_ms
        try:
            response = await self._http.send(request, auth=self._auth if call.signed else None)
            content = await response.aread()
        except httpx.HTTPError as exc:
            latency = (time.monotonic() - started) * 1000
            sent = not isinstance(exc, _NOT_SENT)
            log.debug(
                "%s %s %s -> %s after %.1f ms",
                call.method,
                call.target,
                label,
                type(exc).__name__,
                latency,
            )
            raise TransportError(
                f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}",
                sent=sent,
                method=call.method,
                path=call.path,
            ) from exc
        latency = (time.monotonic() - started) * 1000
        received_ms = self.clock.local_ms()
        payload: Any
        try:
            payload = jsonnum.loads(content) if content else None
        except ValueError:
            payload = None
        envelope = payload if isinstance(payload, dict) else {}
        error = envelope.get("error") if envelope.get("success") is False else None
        code = str(error.get("code")) if isinstance(error, dict) and error.get("code") else None
        log.debug(
            "%s %s %s -> %d %s %.1f ms",
            call.method,
            call.target,
            label,
            response.status_code,
            code or "-",
            latency,
        )
        self.clock.observe(
            sent_ms=sent_ms,
            received_ms=received_ms,
            date_header=response.headers.get("Date"),
            server_ms=_envelope_ms(envelope.get("timestamp")),
            force=code in _RESYNC_CODES,
        )
        if ticket is not None:
            self.budget.observe(ticket, response.headers)
        self.last_answer = LastAnswer(
            status=response.status_code,
            headers={k: v for k in _KEPT_HEADERS if (v := response.headers.get(k)) is not None},
            envelope_timestamp=envelope.get("timestamp"),
            sent_ms=sent_ms,
            received_ms=received_ms,
        )
        status = response.status_code
        if 200 <= status < 300 and envelope.get("success") is True:
            return envelope.get("data")
        retry_after = parse_retry_after(response.headers.get(HEADER_RETRY_AFTER))
        if status == 429:
            self.budget.refused(retry_after if retry_after is not None else 1.0)
        if isinstance(error, dict):
            message = self._scrub(str(error.get("message") or "no message"))
            raise error_for_code(
                code or f"HTTP_{status}",
                status,
                message,
                method=call.method,
                path=call.path,
                retry_after=retry_after,
            )
        # Not the documented envelope (a proxy, a crash page, a truncated body).
        where: dict[str, Any] = {"status": status, "method": call.method, "path": call.path}
        if status == 429:
            raise RateLimited("rate limited", retry_after=retry_after, code="RATE_LIMITED", **where)
        if status in (401, 403):
            raise AuthError("refused", code=f"HTTP_{status}", **where)
        if 400 <= status < 500:
            raise Rejected("refused without an error envelope", code=f"HTTP_{status}", **where)
        raise ServerError("answer without the documented envelope", code="BAD_RESPONSE", **where)

    def _scrub(self, text: str) -> str:
        """Remove the secret from text the exchange or the network produced."""
        return text.replace(self._secret_text, "***") if self._secret_text else text

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

    async def _page(self, model: type[M], path: str, query: Mapping[str, object]) -> Page[M]:
        data = await self._call("GET", path, query=query)
        label = endpoint_label("GET", path)
        return _parsed(lambda: read_page(label, data, _reader(model))).value

    async def _walk(
        self, fetch: Callable[[int], Awaitable[Page[M]]], id_of: Callable[[M], str]
    ) -> AsyncIterator[M]:
        """Yield every item of every page, each once.

        Items are sorted oldest first, so new ones append to the last page; but an item that
        leaves the set (an order filled mid-walk) shifts the later ones back by one and one
        would be skipped. A changed `total` therefore restarts the walk, yielding only items
        not yet seen; if it keeps changing, `UnstableListing` is raised rather than a list
        that may lack an item.
        """
        seen: set[str] = set()
        restarts = 0
        page_no = 1
        total: int | None = None
        while True:
            page = await fetch(page_no)
            if total is None:
                total = page.total
            elif page.total != total:
                if restarts == _MAX_PAGE_RESTARTS:
                    raise UnstableListing(
                        f"the listing changed between page reads {restarts + 1} times"
                    )
                restarts += 1
                page_no, total = 1, None
                continue
            for item in page.items:
                key = id_of(item)
                if key not in seen:
                    seen.add(key)
                    yield item
            if not page.items or page_no * page.page_size >= page.total:
                return
            page_no += 1

    # ------------------------------------------------------------------ market (public)

    async def supported_symbols(self) -> list[SymbolSpec]:
        return await self._models(SymbolSpec, "/market/supported-symbols")

    async def market_stats(self, symbol: str) -> MarketStats:
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
    ) -> Page[Order]:
        query = {
            "userId": self.user_id,
            "symbol": symbol,
            "page": page,
            "pageSize": page_size,
            "startTime": start_time,
            "endTime": end_time,
        }
        return await self._page(Order, "/order/open", query)

    async def iter_open_orders(
        self,
        symbol: str | None = None,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Order]:
        """Every open order, walking all pages to the end."""

        async def fetch(page: int) -> Page[Order]:
            return await self.open_orders(
                symbol, page=page, page_size=page_size, start_time=start_time, end_time=end_time
            )

        async for order in self._walk(fetch, lambda o: o.id):
            yield order

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
