"""The unsigned control API under `/_sandbox`: what tests and demos use to steer the sandbox.

It moves prices, opens accounts, lists symbols, sets faults and the rate limit, resets
everything, and reports every `/api/v1` request served (the request log), so a test can prove
how many times the client really called the exchange. It has no signature, so the app serves it
to loopback clients only.

The handlers take the parsed JSON body and return the `data` of the success envelope; the app
owns HTTP (envelopes, errors, the loopback check). The shapes here are a contract other tools
script against: change them only together with those tools.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from reconciler.sandbox.faults import FaultInjector, FaultProfile
from reconciler.sandbox.profiles import DEFAULT_PROFILE, profile_knobs
from reconciler.sandbox.ratelimit import RateLimiter
from reconciler.sandbox.rejection import Rejection

if TYPE_CHECKING:
    from reconciler.sandbox.auth import ReplayCache
    from reconciler.sandbox.engine import Exchange

__all__ = ["CUT_STATUS", "ControlApi", "ControlRoute", "RequestLog", "is_loopback"]

CUT_STATUS = 0
"""The status the request log records for a connection cut by the `drop_after_commit` fault."""


def is_loopback(host: str | None) -> bool:
    """`127.0.0.0/8`, `::1` (and IPv4-mapped loopback); anything else, or unknown, is remote."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class RequestLog:
    """Every `/api/v1` request served since start or the last clear, oldest first.

    Bounded (oldest entries fall off) so a long-running `sandbox serve` cannot grow without end.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._lock = threading.Lock()

    def record(
        self, method: str, path: str, status: int, code: str | None, key_id: str | None, time: int
    ) -> None:
        entry = {
            "method": method,
            "path": path,
            "status": status,
            "code": code,
            "keyId": key_id,
            "time": time,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


ControlHandler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class ControlRoute:
    method: str
    path: str
    handler: ControlHandler


@dataclass
class ControlApi:
    """The control endpoints over the sandbox's parts.

    `after_change` publishes the engine's pending events (prices move marks and may liquidate),
    exactly as after a committed `/api/v1` request.
    """

    exchange: Exchange
    limiter: RateLimiter
    faults: FaultInjector
    replays: ReplayCache
    log: RequestLog
    after_change: Callable[[], Awaitable[None]]
    default_limit: int
    default_window_s: float
    profile: str = DEFAULT_PROFILE

    def use_profile(self, name: str) -> None:
        """Make `name` the base layer of the faults, clearing every other fault."""
        knobs = profile_knobs(name)
        self.profile = name
        self.faults.clear()
        self.faults.set(FaultProfile.parse(knobs))

    def routes(self) -> list[ControlRoute]:
        return [
            ControlRoute("POST", "/_sandbox/prices", self.set_prices),
            ControlRoute("GET", "/_sandbox/requests", self.list_requests),
            ControlRoute("DELETE", "/_sandbox/requests", self.clear_requests),
            ControlRoute("POST", "/_sandbox/accounts", self.create_account),
            ControlRoute("POST", "/_sandbox/symbols", self.add_symbols),
            ControlRoute("POST", "/_sandbox/faults", self.set_faults),
            ControlRoute("GET", "/_sandbox/faults", self.get_faults),
            ControlRoute("GET", "/_sandbox/faults/log", self.fault_log),
            ControlRoute("POST", "/_sandbox/profile", self.set_profile),
            ControlRoute("GET", "/_sandbox/profile", self.get_profile),
            ControlRoute("DELETE", "/_sandbox/faults/log", self.clear_fault_log),
            ControlRoute("POST", "/_sandbox/held", self.held),
            ControlRoute("POST", "/_sandbox/release", self.release),
            ControlRoute("POST", "/_sandbox/reset", self.reset),
            ControlRoute("POST", "/_sandbox/rate-limit", self.set_rate_limit),
        ]

    async def set_prices(self, body: Any) -> Any:
        prices = _object(body)
        for symbol, price in prices.items():
            if isinstance(price, bool) or not isinstance(price, int | Decimal):
                raise Rejection("VALIDATION_ERROR", f"price of {symbol} must be a number")
        parsed = {symbol: Decimal(price) for symbol, price in prices.items()}
        try:
            return await run_in_threadpool(self.exchange.set_prices, parsed)
        finally:
            await self.after_change()

    async def list_requests(self, body: Any) -> Any:
        return self.log.entries()

    async def clear_requests(self, body: Any) -> Any:
        self.log.clear()
        return None

    async def create_account(self, body: Any) -> Any:
        fields = _object(body)
        user_id = _text(fields, "userId")
        key_id = _text(fields, "apiKeyId")
        secret = _text(fields, "apiKeySecret")
        scopes = fields.get("scopes", ["read", "trade"])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise Rejection("VALIDATION_ERROR", "scopes must be a list of strings")
        balance = fields.get("balance", Decimal(0))
        if isinstance(balance, bool) or not isinstance(balance, int | Decimal):
            raise Rejection("VALIDATION_ERROR", "balance must be a number")
        try:
            return await run_in_threadpool(
                self.exchange.create_account,
                user_id,
                key_id,
                secret,
                scopes,
                Decimal(balance),
            )
        finally:
            await self.after_change()

    async def add_symbols(self, body: Any) -> Any:
        specs = body.get("symbols") if isinstance(body, dict) else body
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise Rejection("VALIDATION_ERROR", 'expected {"symbols": [spec, ...]} or a list')
        try:
            return await run_in_threadpool(self.exchange.add_symbols, specs)
        finally:
            await self.after_change()

    async def set_faults(self, body: Any) -> Any:
        """Faults on top of the active profile's knobs (a key given here wins)."""
        try:
            profile = FaultProfile.parse({**profile_knobs(self.profile), **_object(body)})
        except ValueError as error:
            raise Rejection("VALIDATION_ERROR", str(error)) from error
        await run_in_threadpool(self.faults.set, profile)  # may copy the database
        return profile.as_dict()

    async def set_profile(self, body: Any) -> Any:
        name = _object(body).get("name")
        if not isinstance(name, str):
            raise Rejection("VALIDATION_ERROR", 'expected {"name": "ideal"|"realistic"}')
        try:
            await run_in_threadpool(self.use_profile, name)
        except ValueError as error:
            raise Rejection("VALIDATION_ERROR", str(error)) from error
        return await self.get_profile(None)

    async def get_profile(self, body: Any) -> Any:
        return {"name": self.profile, "knobs": profile_knobs(self.profile)}

    async def get_faults(self, body: Any) -> Any:
        return self.faults.profile.as_dict()

    async def fault_log(self, body: Any) -> Any:
        """Every fault that struck since the profile was last cleared, oldest first."""
        return self.faults.log()

    async def clear_fault_log(self, body: Any) -> Any:
        self.faults.clear_log()
        return None

    async def held(self, body: Any) -> Any:
        """Wait (up to `timeout` seconds, default 10) until a `hold` fault holds a request."""
        timeout = _object(body).get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | Decimal) or timeout < 0:
            raise Rejection("VALIDATION_ERROR", "timeout must be a number of seconds")
        return await self.faults.wait_held(float(min(timeout, 120)))

    async def release(self, body: Any) -> Any:
        """Let every held request go on; returns how many there were."""
        return {"released": self.faults.release_all()}

    async def reset(self, body: Any) -> Any:
        """Back to a fresh demo sandbox: state, log, faults, rate-limit budget and windows.

        The profile stays; its replica (if it lags) starts again from the fresh state.
        """
        self.faults.clear()
        await run_in_threadpool(self.exchange.reset)
        await run_in_threadpool(self.exchange.drain_events)
        await run_in_threadpool(self.use_profile, self.profile)
        self.log.clear()
        self.limiter.configure(self.default_limit, self.default_window_s)
        self.limiter.clear()
        self.replays.clear()
        return None

    async def set_rate_limit(self, body: Any) -> Any:
        fields = _object(body)
        limit = fields.get("limit", self.limiter.limit)
        window = fields.get("window", Decimal(str(self.limiter.window_s)))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise Rejection("VALIDATION_ERROR", "limit must be a positive integer")
        if isinstance(window, bool) or not isinstance(window, int | Decimal) or window <= 0:
            raise Rejection("VALIDATION_ERROR", "window must be a positive number of seconds")
        self.limiter.configure(limit, float(window))
        self.limiter.clear()
        return {"limit": limit, "window": window}


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise Rejection("VALIDATION_ERROR", "the body must be a JSON object")
    return body


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise Rejection("VALIDATION_ERROR", f"{name} must be a non-empty string")
    return value
