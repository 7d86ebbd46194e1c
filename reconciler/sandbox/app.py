"""The sandbox's HTTP face: every documented REST endpoint of `docs/levret-api.md` under `/api/v1`.

`create_app` wires the parts (signature check, rate limit, faults, request log, stream, control
API) around an `Exchange` and returns one ASGI application. The endpoint table `ENDPOINTS` is
the single list of what is served; the routes and the OpenAPI document are both built from it,
so the two cannot disagree.

Per private request, in order: latency fault, rate-limit count (refused requests count too),
signature, scope, `userId` ownership, JSON body, `fail_before` fault, the handler in the thread
pool (it validates the query and calls the engine, which is synchronous and serialises its own
transactions), publishing the engine's events on the stream, `drop_after_commit` fault.
Every answer is an envelope: success `{"success", "data", "timestamp"}`, error `{"success",
"error": {"code", "message"}, "path", "timestamp"}`, including 404 on unknown routes, 405 (code
`METHOD_NOT_ALLOWED`, the one code the documentation's table lacks) and 500 `INTERNAL_ERROR`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler import jsonnum
from reconciler.sandbox import faults as fault_effects
from reconciler.sandbox.auth import Authenticator, KeyRecord, require_own_user, require_scope
from reconciler.sandbox.control import (
    CUT_STATUS,
    ControlApi,
    ControlRoute,
    RequestLog,
    is_loopback,
)
from reconciler.sandbox.faults import AfterCommit, FaultInjector, FaultProfile
from reconciler.sandbox.openapi import (
    NULLABLE_NUMBER,
    Param,
    list_of,
    openapi_document,
    page_of,
    ref,
)
from reconciler.sandbox.profiles import DEFAULT_PROFILE
from reconciler.sandbox.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S, RateLimiter
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.replica import Replica
from reconciler.sandbox.stream import Stream
from reconciler.sandbox.wirestyle import DEFAULT_WIRE_STYLE, envelope_timestamp, restyle

if TYPE_CHECKING:
    from reconciler.sandbox.engine import Exchange

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "Endpoint",
    "Sandbox",
    "SandboxSettings",
    "create_app",
    "openapi",
]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d")
_NOTE = "reconciler.sandbox.note"


@dataclass(frozen=True)
class SandboxSettings:
    """What a sandbox server is started with (`sandbox serve` flags, test fixtures)."""

    rate_limit: int = DEFAULT_LIMIT
    rate_window_s: float = DEFAULT_WINDOW_S
    max_body_bytes: int = 1 << 20
    request_log_size: int = 100_000
    profile: str = DEFAULT_PROFILE
    wire_style: str = DEFAULT_WIRE_STYLE


# --- query parameters ------------------------------------------------------------------------


class Query:
    """The query string, parsed once; each accessor raises `VALIDATION_ERROR` when malformed."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self._params = QueryParams(raw)

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def text(self, name: str, *, required: bool = False) -> str | None:
        values = self._params.getlist(name)
        if len(values) > 1:
            raise Rejection("VALIDATION_ERROR", f"{name} given more than once")
        if not values or values[0] == "":
            if required:
                raise Rejection("VALIDATION_ERROR", f"{name} is required")
            return None
        return values[0]

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()) or len(value) > 15:
            raise Rejection("VALIDATION_ERROR", f"{name} must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise Rejection("VALIDATION_ERROR", f"{name} must be between {low} and {high}")
        return number

    def bounded(self, name: str, default: int, low: int, high: int) -> int:
        value = self.integer(name, default, low, high)
        assert value is not None
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.text(name) or default
        if value not in options:
            raise Rejection("VALIDATION_ERROR", f"{name} must be one of {', '.join(options)}")
        return value

    def paging(self) -> tuple[int, int, int | None, int | None]:
        """`page`, `pageSize`, `startTime`, `endTime` as `docs/levret-api.md` ("Pages")."""
        page = self.bounded("page", 1, 1, 10**9)
        size = self.bounded("pageSize", 50, 1, 100)
        start = self.integer("startTime", None, 0, 10**15)
        end = self.integer("endTime", None, 0, 10**15)
        return page, size, start, end


# --- the endpoint table ----------------------------------------------------------------------


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


# --- envelopes -------------------------------------------------------------------------------


@dataclass
class Note:
    """Per-request facts the request log needs and only the handlers know."""

    code: str | None = None
    key_id: str | None = None
    cut: bool = False


def _note(scope: Scope) -> Note:
    note = scope.get(_NOTE)
    if not isinstance(note, Note):
        note = Note()
        scope[_NOTE] = note
    return note


def iso_timestamp(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Envelopes:
    """Builds the documented envelopes, stamped with the server's (possibly skewed) clock."""

    def __init__(self, clock: Callable[[], int], wire_style: str = DEFAULT_WIRE_STYLE) -> None:
        self._clock = clock
        self.wire_style = wire_style

    def answer(self, data: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A REST answer, its `data` and `timestamp` in the sandbox's wire style."""
        style = self.wire_style
        body = {
            "success": True,
            "data": restyle(style, data),
            "timestamp": envelope_timestamp(style, self._clock()),
        }
        return self._json(body, 200, headers)

    def success(
        self, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = {"success": True, "data": data, "timestamp": iso_timestamp(self._clock())}
        return self._json(body, status, headers)

    def error(
        self,
        scope: Scope,
        code: str,
        message: str,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        _note(scope).code = code
        body = {
            "success": False,
            "error": {"code": code, "message": message},
            "path": scope.get("path", ""),
            "timestamp": iso_timestamp(self._clock()),
        }
        return self._json(body, status, headers)

    def rejection(
        self, scope: Scope, rejection: Rejection, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.error(scope, rejection.code, rejection.message, rejection.status, headers)

    @staticmethod
    def _json(body: Any, status: int, headers: Mapping[str, str] | None) -> Response:
        return Response(
            jsonnum.dumps(body),
            status_code=status,
            headers=dict(headers or {}),
            media_type="application/json",
        )


class CutResponse(Response):
    """Announce a 502 with a body, send none, return: uvicorn then closes the connection.

    The client has a status line but an incomplete message, which HTTP clients report as a
    transport error; that is the "connection died after the commit" case.
    """

    def __init__(self, scope: Scope) -> None:
        super().__init__(b"", status_code=502)
        _note(scope).cut = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"128"),
                    (b"connection", b"close"),
                ],
            }
        )


def raw_target(scope: Scope) -> str:
    """The request target exactly as sent: raw path, and the raw query if there is one."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string", b"")
    target = bytes(raw) + (b"?" + bytes(query) if query else b"")
    return target.decode("latin-1")


# --- the application -------------------------------------------------------------------------


class Sandbox:
    """The parts of one sandbox and the request pipeline over them."""

    def __init__(self, exchange: Exchange, settings: SandboxSettings) -> None:
        self.exchange = exchange
        exchange.drain_events()  # what happened before serving (seeding) has no audience
        self.settings = settings
        self.replica = Replica(exchange)
        self.faults = FaultInjector(on_profile=self._follow_profile, wall_clock=exchange.clock)
        self.clock = self.faults.now_ms
        exchange.clock = self.clock  # a skew moves every timestamp the exchange writes too
        self.envelopes = Envelopes(self.clock, settings.wire_style)
        self.limiter = RateLimiter(self.clock, settings.rate_limit, settings.rate_window_s)
        self.auth = Authenticator(self._lookup, self.clock)
        self.log = RequestLog(settings.request_log_size)
        self.stream = Stream(self._lookup)
        self.control = ControlApi(
            exchange=exchange,
            limiter=self.limiter,
            faults=self.faults,
            replays=self.auth.replays,
            log=self.log,
            after_change=self.publish_events,
            default_limit=settings.rate_limit,
            default_window_s=settings.rate_window_s,
        )
        if settings.profile != DEFAULT_PROFILE:
            self.control.use_profile(settings.profile)

    def _follow_profile(self, profile: FaultProfile) -> None:
        """The engine-side settings a fault profile carries."""
        config = self.exchange.config
        config.partial_fill_ratio = Decimal("0.5") if profile.partial_fills else None
        config.book_depth = profile.book_depth
        config.resting_partial_fills = profile.resting_partial_fills
        config.stop_slippage = profile.stop_slippage
        self.replica.set_lag(profile.read_lag_ms)

    async def _lookup(self, key_id: str) -> KeyRecord | None:
        """The key, from the engine's cache when it has one (no thread hop), else the store."""
        known, key = self.exchange.cached_key(key_id)
        if known:
            return key
        found: KeyRecord | None = await run_in_threadpool(self.exchange.lookup_key, key_id)
        return found

    async def publish_events(self) -> None:
        events = await run_in_threadpool(self.exchange.drain_events)
        await self.stream.publish(events)

    def asgi(self) -> ASGIApp:
        """REST and control routes, Socket.IO in front, `Date` and the request log outermost."""
        starlette = Starlette(
            routes=self.routes(),
            exception_handlers={
                HTTPException: self.http_error,
                Exception: self.server_error,
            },
        )
        starlette.router.redirect_slashes = False
        return ServerMiddleware(self.stream.asgi(starlette), self.clock, self.log)

    # --- routes ---

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(API_PREFIX + e.path, self._api_endpoint(e), methods=[e.method]) for e in ENDPOINTS
        ]
        routes.append(Route(API_PREFIX + "/openapi.json", self._openapi, methods=["GET"]))
        routes.extend(
            Route(r.path, self._control_endpoint(r), methods=[r.method])
            for r in self.control.routes()
        )
        return routes

    async def _openapi(self, request: Request) -> Response:
        document = openapi()
        return Response(jsonnum.dumps(document), media_type="application/json")

    def _api_endpoint(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                return await self._serve(endpoint, request, headers)
            except Rejection as rejection:
                return self.envelopes.rejection(request.scope, rejection, headers)
            except Exception:
                logger.exception("unexpected error serving %s %s", endpoint.method, endpoint.path)
                return self.envelopes.error(
                    request.scope, "INTERNAL_ERROR", "the server failed", 500, headers
                )

        return handle

    async def _serve(
        self, endpoint: Endpoint, request: Request, headers: dict[str, str]
    ) -> Response:
        self.faults.count_request()
        delay = self.faults.latency_s()
        if delay:
            await asyncio.sleep(delay)
        scope = request.scope
        query = Query(scope.get("query_string", b"").decode("latin-1"))
        user_id = ""
        if endpoint.scope is not None:
            key_id = request.headers.get("x-api-key-id")
            client = request.client.host if request.client else "unknown"
            decision = self.limiter.hit(key_id or f"anonymous:{client}")
            headers.update(decision.headers())
            if not decision.allowed:
                raise Rejection(
                    "RATE_LIMITED", f"over {decision.limit} requests per rolling window"
                )
            if self.faults.throttle():
                reset = str(self.clock() // 1000)  # the storm is over as soon as it ends
                headers.update(
                    {"Retry-After": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
                )
                raise Rejection("RATE_LIMITED", "rate limit storm (injected fault)")
            raw_body = await self._body(request)
            key = await self.auth.authenticate(
                request.method, raw_target(scope), request.headers, raw_body
            )
            require_scope(key, endpoint.scope)
            user_id = key.user_id
            named = query.text("userId")
            if named is not None:
                require_own_user(key, named)
            if "user_id" in request.path_params:
                require_own_user(key, request.path_params["user_id"])
        else:
            raw_body = await self._body(request)
        body = _parse_body(raw_body) if endpoint.mutating else {}
        if endpoint.scope is not None and endpoint.mutating and self.faults.fail_before():
            return self.envelopes.error(
                scope, "INTERNAL_ERROR", "service unavailable (injected fault)", 503, headers
            )
        private_write = endpoint.scope is not None and endpoint.mutating
        if private_write and self.faults.drop_before():
            self.faults.record("drop_before", path=endpoint.path)
            return CutResponse(scope)
        if private_write and self.faults.should_hold(endpoint.path, "before"):
            await self.faults.hold_here(endpoint.path, "before")
            return CutResponse(scope)  # released unexecuted: the client is gone or gives up
        if private_write and self.faults.should_hold(endpoint.path, "delay"):
            await self.faults.hold_here(endpoint.path, "delay")  # then executes as usual
        call = Call(self.exchange, user_id, dict(request.path_params), query, body)
        events: list[tuple[str, str | None, Any]] = []

        def execute() -> Any:
            """The engine call, then its events (and any a concurrent call left), in one hop."""
            try:
                return self._faulted(endpoint, call, private_write)
            finally:
                events.extend(self.exchange.drain_events())

        outcome: Response
        try:
            data = await run_in_threadpool(execute)
            outcome = self.envelopes.answer(data, headers=headers)
        except Rejection as rejection:
            outcome = self.envelopes.rejection(scope, rejection, headers)
        finally:
            await self.stream.publish(events)
        if private_write and self.faults.should_hold(endpoint.path, "after"):
            await self.faults.hold_here(endpoint.path, "after")
        if private_write:
            after = self.faults.after_commit()
            if after is not AfterCommit.DELIVER:
                self.faults.record(after.value, path=endpoint.path)
            if after is AfterCommit.CUT:
                return CutResponse(scope)
            if after is AfterCommit.BAD_GATEWAY:
                return self.envelopes.error(
                    scope, "INTERNAL_ERROR", "bad gateway (injected fault)", 502, headers
                )
            if after is AfterCommit.GARBAGE_500:
                return Response(b"<html><body>500 oops</body></html>", 500, media_type="text/html")
            if after is AfterCommit.TRUNCATED_200:
                return Response(bytes(outcome.body)[:17], 200, media_type="application/json")
        return outcome

    def _faulted(self, endpoint: Endpoint, call: Call, private_write: bool) -> Any:
        """The handler with the engine-side faults around it (in the engine's thread)."""
        faults, exchange = self.faults, self.exchange
        if private_write:
            fault_effects.before_execute(
                faults, exchange, call.user_id, endpoint.path, call.path_params, call.body
            )
            if not faults.profile.instant_fills:
                return endpoint.handler(call)
            with exchange._unit():  # placement and instant fill: one transaction
                data = endpoint.handler(call)
                return fault_effects.after_execute(
                    faults, exchange, call.user_id, endpoint.path, data
                )
        if endpoint.scope is None:
            return endpoint.handler(call)
        lagged = self.replica.reader()  # one copy for the whole read, page shift included
        if lagged is not None:
            call = replace(call, exchange=lagged)
        data = endpoint.handler(call)
        try:
            data = fault_effects.hide_recent(faults, exchange, endpoint.path, data)
        except LookupError as hidden:
            raise Rejection("NOT_FOUND", f"no order {hidden}") from None
        page = call.query.integer("page", 1, 1, 10**9) or 1
        paged = isinstance(data, dict) and "items" in data
        if page >= 2 and paged and faults.page_shift():
            raw = re.sub(r"(^|&)page=\d+", rf"\g<1>page={page + 1}", call.query.raw)
            later = endpoint.handler(replace(call, query=Query(raw)))
            data = fault_effects.shift_page(data, later)
            faults.record("page_shift", path=endpoint.path, page=page)
        return data

    async def _body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise Rejection("VALIDATION_ERROR", "request body too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _control_endpoint(self, route: ControlRoute) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                if not is_loopback(request.client.host if request.client else None):
                    raise Rejection("FORBIDDEN_SCOPE", "the control API serves loopback only")
                raw = await self._body(request)
                body = _parse_json(raw) if raw.strip() else None
                return self.envelopes.success(await route.handler(body))
            except Rejection as rejection:
                return self.envelopes.rejection(request.scope, rejection)
            except Exception:
                logger.exception("unexpected error serving %s %s", route.method, route.path)
                return self.envelopes.error(
                    request.scope, "INTERNAL_ERROR", "the server failed", 500
                )

        return handle

    # --- Starlette's own errors ---

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return self.envelopes.error(request.scope, "NOT_FOUND", "no such route", 404)
        if exc.status_code == 405:
            return self.envelopes.error(
                request.scope,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed here",
                405,
                exc.headers,
            )
        code = "VALIDATION_ERROR" if exc.status_code < 500 else "INTERNAL_ERROR"
        return self.envelopes.error(request.scope, code, str(exc.detail), exc.status_code)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.envelopes.error(request.scope, "INTERNAL_ERROR", "the server failed", 500)


def _parse_json(raw: bytes) -> Any:
    try:
        return jsonnum.loads(raw)
    except (ValueError, RecursionError) as error:
        raise Rejection("VALIDATION_ERROR", f"malformed JSON body: {error}") from error


def _parse_body(raw: bytes) -> dict[str, Any]:
    """A POST body is a JSON object; an empty body stands for `{}` (e.g. `/close`)."""
    if not raw.strip():
        return {}
    body = _parse_json(raw)
    if not isinstance(body, dict):
        raise Rejection("VALIDATION_ERROR", "the body must be a JSON object")
    return body


class ServerMiddleware:
    """Outermost layer: the `Date` header from the server's clock, and the request log.

    The client estimates its clock offset from `Date`, so it must come from the same (possibly
    skewed) clock the signature window uses; uvicorn's own `Date` is turned off by the server.
    Every `/api/v1` request is logged with the status actually sent (0 for a cut connection).
    """

    def __init__(self, app: ASGIApp, clock: Callable[[], int], log: RequestLog) -> None:
        self._app = app
        self._clock = clock
        self._log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        note = _note(scope)
        for name, value in scope.get("headers", []):
            if name.lower() == b"x-api-key-id":
                note.key_id = value.decode("latin-1")
        started = self._clock()
        status = 0

        async def send_dated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                date = formatdate(self._clock() / 1000, usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        try:
            await self._app(scope, receive, send_dated)
        finally:
            path: str = scope["path"]
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._log.record(
                    scope["method"],
                    raw_target(scope),
                    CUT_STATUS if note.cut else status,
                    note.code,
                    note.key_id,
                    started,
                )


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the served `/api/v1`, built from `ENDPOINTS`."""
    return openapi_document(ENDPOINTS, API_PREFIX)


def create_app(exchange: Exchange, settings: SandboxSettings | None = None) -> ASGIApp:
    """The whole sandbox as one ASGI app: REST, control API, Socket.IO, `Date`, request log."""
    return Sandbox(exchange, settings or SandboxSettings()).asgi()


# --- OpenAPI ---------------------------------------------------------------------------------
