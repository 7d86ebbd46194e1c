"""The sandbox's HTTP face: the parts of one sandbox wired into one ASGI application.

Built the way a Starlette application is, from explicit lists:

- `Sandbox.routes()`: every endpoint of `ENDPOINTS` (`endpoints.py`, the documented REST API
  under `/api/v1`, each through the request pipeline of `pipeline.py`), the OpenAPI document,
  and the control API (`control.py`, loopback only);
- `Sandbox.layers()`: what wraps the routes, innermost first: Socket.IO on its own path
  (`stream.py`), then the `Date` header and the request log (`middleware.py`);
- `STEPS` (`pipeline.py`): what each `/api/v1` request goes through, in order: latency,
  rate limit, signature, faults, the engine call, faults after the commit.

The answers are the envelopes of `envelopes.py`, including Starlette's own 404 and 405.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from reconciler import jsonnum
from reconciler.sandbox.auth import Authenticator, KeyRecord
from reconciler.sandbox.control import ControlApi, ControlRoute, RequestLog, is_loopback
from reconciler.sandbox.endpoints import API_PREFIX, ENDPOINTS, Endpoint, openapi
from reconciler.sandbox.envelopes import Envelopes
from reconciler.sandbox.faults import FaultInjector, FaultProfile
from reconciler.sandbox.incoming import parse_json, read_body
from reconciler.sandbox.middleware import ServerMiddleware
from reconciler.sandbox.pipeline import STEPS, Parts, Pipeline
from reconciler.sandbox.profiles import DEFAULT_PROFILE
from reconciler.sandbox.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S, RateLimiter
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.replica import Replica
from reconciler.sandbox.stream import Stream
from reconciler.sandbox.wirestyle import DEFAULT_WIRE_STYLE

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

Layer = Callable[[ASGIApp], ASGIApp]


@dataclass(frozen=True)
class SandboxSettings:
    """What a sandbox server is started with (`sandbox serve` flags, test fixtures)."""

    rate_limit: int = DEFAULT_LIMIT
    rate_window_s: float = DEFAULT_WINDOW_S
    max_body_bytes: int = 1 << 20
    request_log_size: int = 100_000
    profile: str = DEFAULT_PROFILE
    wire_style: str = DEFAULT_WIRE_STYLE


class Sandbox:
    """The parts of one sandbox, and the routes, layers and pipeline over them."""

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
        exchange.listening = self.stream.has_listeners
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
        self.pipeline = Pipeline(
            Parts(
                exchange=exchange,
                faults=self.faults,
                limiter=self.limiter,
                auth=self.auth,
                envelopes=self.envelopes,
                replica=self.replica,
                stream=self.stream,
                clock=self.clock,
                max_body_bytes=settings.max_body_bytes,
            ),
            STEPS,
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

    # --- the application, from its lists ---

    def asgi(self) -> ASGIApp:
        """The routes in a Starlette app (its errors as envelopes), inside `layers()`."""
        starlette = Starlette(
            routes=self.routes(),
            exception_handlers={
                HTTPException: self.http_error,
                Exception: self.server_error,
            },
        )
        starlette.router.redirect_slashes = False
        app: ASGIApp = starlette
        for layer in self.layers():
            app = layer(app)
        return app

    def layers(self) -> list[Layer]:
        """What wraps the routes, innermost first."""
        return [
            self.stream.asgi,  # Socket.IO on `/socket.io/`, everything else passed on
            partial(ServerMiddleware, clock=self.clock, log=self.log),  # `Date`, request log
        ]

    def routes(self) -> list[BaseRoute]:
        """The REST API, its OpenAPI document, then the control API."""
        return [
            *(self._api_route(endpoint) for endpoint in ENDPOINTS),
            Route(API_PREFIX + "/openapi.json", self._openapi, methods=["GET"]),
            *(self._control_route(route) for route in self.control.routes()),
        ]

    def _api_route(self, endpoint: Endpoint) -> Route:
        handle = self.pipeline.handler(endpoint)
        return Route(API_PREFIX + endpoint.path, handle, methods=[endpoint.method])

    async def _openapi(self, request: Request) -> Response:
        document = openapi()
        return Response(jsonnum.dumps(document), media_type="application/json")

    def _control_route(self, route: ControlRoute) -> Route:
        return Route(route.path, self._control_endpoint(route), methods=[route.method])

    def _control_endpoint(self, route: ControlRoute) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                if not is_loopback(request.client.host if request.client else None):
                    raise Rejection("FORBIDDEN_SCOPE", "the control API serves loopback only")
                raw = await read_body(request, self.settings.max_body_bytes)
                body = parse_json(raw) if raw.strip() else None
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


def create_app(exchange: Exchange, settings: SandboxSettings | None = None) -> ASGIApp:
    """The whole sandbox as one ASGI app: REST, control API, Socket.IO, `Date`, request log."""
    return Sandbox(exchange, settings or SandboxSettings()).asgi()
