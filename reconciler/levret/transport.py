"""The signed, paced, retrying core of the Levret client: one logical call, end to end.

Each call is built once (path, query and body bytes), paced by the key's budget, then signed
afresh on every attempt and sent. What happens after a failure depends on the call's retry
class (`reconciler.model.intents.RetryClass`): an intent's own, or for a raw call, read
from the method and path (`retry_class`):

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
failure raises `OutcomeUnknown` too, so apply sees one of four outcomes (`apply.outcome`).

Logging goes to `reconciler.levret` at DEBUG: method, target, attempt `#n/N`, status, code
and latency. Headers, the signature and the secret are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from reconciler import jsonnum
from reconciler.levret.connections import http_transport
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
    error_for_code,
)
from reconciler.levret.fields import read_time_ms
from reconciler.levret.ratelimit import (
    HEADER_LIMIT,
    HEADER_REMAINING,
    HEADER_RESET,
    HEADER_RETRY_AFTER,
    RateBudget,
    Sleep,
    Ticket,
    backoff_delay,
    parse_retry_after,
)
from reconciler.levret.settings import ClientSettings
from reconciler.levret.signing import LevretAuth, ServerClock
from reconciler.model.intents import RetryClass

__all__ = ["LastAnswer", "SignedTransport", "encode_query", "retry_class"]

log = logging.getLogger("reconciler.levret")


_RESYNC_CODES = frozenset({"SIGNATURE_EXPIRED", "TIMESTAMP_IN_FUTURE", "REPLAYED_REQUEST"})
# Exceptions after which the request certainly never reached the exchange.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _tls_verification(settings: ClientSettings) -> bool | ssl.SSLContext:
    """How the client checks TLS. A plain-http origin (allowed only on loopback) never makes
    a TLS handshake, yet loading the system's certificates for it costs tens of milliseconds
    per client; it gets a context that verifies everything and trusts nothing, so that if it
    were ever used it would refuse, not accept."""
    if urlsplit(settings.base_url).scheme == "http":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return settings.verify_tls


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


_KEPT_HEADERS = frozenset(
    {"date", HEADER_RETRY_AFTER, HEADER_LIMIT, HEADER_REMAINING, HEADER_RESET}
)


def _kept_headers(headers: httpx.Headers) -> dict[str, str]:
    """The answer's headers the client reads, by lower-case name; a repeated one joined with
    ", ", as `httpx.Headers` itself answers for it."""
    kept: dict[str, str] = {}
    for name, value in headers.multi_items():  # names come lower-cased
        if name in _KEPT_HEADERS:
            kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


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


class SignedTransport:
    """The connection, the key's budget and the signer, and the one way a call goes out.

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
        verify = _tls_verification(settings)
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else http_transport(verify),
            verify=verify,
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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def user_id(self) -> str:
        return self.settings.user_id

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
        # The few headers read below, in one pass: each look-up of an `httpx.Headers` walks
        # and decodes all of them, and these were a dozen per call.
        kept = _kept_headers(response.headers)
        self.clock.observe(
            sent_ms=sent_ms,
            received_ms=received_ms,
            date_header=kept.get("date"),
            server_ms=_envelope_ms(envelope.get("timestamp")),
            force=code in _RESYNC_CODES,
        )
        if ticket is not None:
            self.budget.observe(ticket, kept)
        self.last_answer = LastAnswer(
            status=response.status_code,
            headers=kept,
            envelope_timestamp=envelope.get("timestamp"),
            sent_ms=sent_ms,
            received_ms=received_ms,
        )
        status = response.status_code
        if 200 <= status < 300 and envelope.get("success") is True:
            return envelope.get("data")
        retry_after = parse_retry_after(kept.get(HEADER_RETRY_AFTER))
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
