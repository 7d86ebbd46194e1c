"""The request pipeline of every `/api/v1` endpoint: an explicit list of small named steps.

`STEPS` is the order a request goes through, the same for every endpoint; a step that does
not concern the request (a signed-only step on a public read, a fault on a read) passes it
on. A step may end the request by returning the answer (a fault's 503, a cut connection) or
by raising a `Rejection` (answered as its envelope, with the headers gathered so far, such
as the rate limit's). In order:

1. `latency` (fault `latency_ms`; every request also counts towards `clock_jump_after`);
2. `rate_limit`: signed requests count against their key's window, refused ones too;
3. `storm_429` (fault);
4. `read_request_body`;
5. `authenticate`: signature, scope, `userId` ownership (signed requests);
6. `parse_request_body`: a POST's JSON object;
7. `fail_before`, `drop_before`, `hold_before`, `hold_delay` (faults, signed writes only);
8. `execute`: the handler, on the event loop itself (it validates the query and calls the
   engine, which is synchronous and serialises its own transactions under one lock), with
   the engine-side faults around it, then the engine's events on the stream;
9. `hold_after`, `after_commit` (faults, signed writes only): the answer delayed, lost or
   garbled after the commit.

A new fault kind is one more step here, asking `FaultInjector` (`faults.py`) at its moment.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from reconciler.sandbox import fault_effects
from reconciler.sandbox.auth import Authenticator, require_own_user, require_scope
from reconciler.sandbox.endpoints import Call, Endpoint
from reconciler.sandbox.envelopes import CutResponse, Envelopes
from reconciler.sandbox.faults import AfterCommit, FaultInjector
from reconciler.sandbox.incoming import Query, parse_body, raw_target, read_body
from reconciler.sandbox.ratelimit import RateLimiter
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.replica import Replica
from reconciler.sandbox.stream import Stream

if TYPE_CHECKING:
    from reconciler.sandbox.engine import Exchange

__all__ = ["STEPS", "Parts", "Passage", "Pipeline", "Step"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """The parts of one sandbox the steps use."""

    exchange: Exchange
    faults: FaultInjector
    limiter: RateLimiter
    auth: Authenticator
    envelopes: Envelopes
    replica: Replica
    stream: Stream
    clock: Callable[[], int]
    max_body_bytes: int


@dataclass
class Passage:
    """One request on its way through the steps, and what they have learnt of it so far."""

    endpoint: Endpoint
    request: Request
    query: Query
    headers: dict[str, str] = field(default_factory=dict)  # answer headers (rate limit)
    raw_body: bytes = b""
    body: dict[str, Any] = field(default_factory=dict)
    user_id: str = ""
    outcome: Response | None = None  # the handler's answer, once executed

    @property
    def scope(self) -> Scope:
        return self.request.scope

    @property
    def path(self) -> str:
        """The route template (`/positions/{position_id}/margin`): what holds name."""
        return self.endpoint.path

    @property
    def signed(self) -> bool:
        return self.endpoint.scope is not None

    @property
    def private_write(self) -> bool:
        return self.signed and self.endpoint.mutating


# A step ends the request with an answer, or returns None to pass it on.
Step = Callable[[Parts, Passage], Awaitable[Response | None]]


async def latency(parts: Parts, passage: Passage) -> None:
    """Fault `latency_ms`: every request waits its seeded draw first."""
    parts.faults.count_request()
    delay = parts.faults.latency_s()
    if delay:
        await asyncio.sleep(delay)


async def rate_limit(parts: Parts, passage: Passage) -> None:
    """A signed endpoint's request counts against its key's window (no key id: its address's);
    refused requests count too."""
    if not passage.signed:
        return
    request = passage.request
    key_id = request.headers.get("x-api-key-id")
    client = request.client.host if request.client else "unknown"
    decision = parts.limiter.hit(key_id or f"anonymous:{client}")
    passage.headers.update(decision.headers())
    if not decision.allowed:
        raise Rejection("RATE_LIMITED", f"over {decision.limit} requests per rolling window")


async def storm_429(parts: Parts, passage: Passage) -> None:
    """Fault `storm_429`: refused as over the limit, though the window has room."""
    if not passage.signed or not parts.faults.throttle():
        return
    reset = str(parts.clock() // 1000)  # the storm is over as soon as it ends
    passage.headers.update(
        {"Retry-After": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    )
    raise Rejection("RATE_LIMITED", "rate limit storm (injected fault)")


async def read_request_body(parts: Parts, passage: Passage) -> None:
    passage.raw_body = await read_body(passage.request, parts.max_body_bytes)


async def authenticate(parts: Parts, passage: Passage) -> None:
    """Signature, then scope, then that any `userId` named is the key's own user."""
    if not passage.signed:
        return
    request = passage.request
    key = await parts.auth.authenticate(
        request.method, raw_target(passage.scope), request.headers, passage.raw_body
    )
    assert passage.endpoint.scope is not None
    require_scope(key, passage.endpoint.scope)
    passage.user_id = key.user_id
    named = passage.query.text("userId")
    if named is not None:
        require_own_user(key, named)
    if "user_id" in request.path_params:
        require_own_user(key, request.path_params["user_id"])


async def parse_request_body(parts: Parts, passage: Passage) -> None:
    if passage.endpoint.mutating:
        passage.body = parse_body(passage.raw_body)


async def fail_before(parts: Parts, passage: Passage) -> Response | None:
    """Fault `fail_before`: a 503 before anything executes."""
    if passage.private_write and parts.faults.fail_before():
        return parts.envelopes.error(
            passage.scope,
            "INTERNAL_ERROR",
            "service unavailable (injected fault)",
            503,
            passage.headers,
        )
    return None


async def drop_before(parts: Parts, passage: Passage) -> Response | None:
    """Fault `drop_before`: the connection is cut before anything executes."""
    if passage.private_write and parts.faults.drop_before():
        parts.faults.record("drop_before", path=passage.path)
        return CutResponse(passage.scope)
    return None


async def hold_before(parts: Parts, passage: Passage) -> Response | None:
    """Fault `hold` "before": waits for release, then is cut unexecuted (the client gave up)."""
    if passage.private_write and parts.faults.should_hold(passage.path, "before"):
        await parts.faults.hold_here(passage.path, "before")
        return CutResponse(passage.scope)
    return None


async def hold_delay(parts: Parts, passage: Passage) -> None:
    """Fault `hold` "delay": waits for release, then executes as usual."""
    if passage.private_write and parts.faults.should_hold(passage.path, "delay"):
        await parts.faults.hold_here(passage.path, "delay")


async def execute(parts: Parts, passage: Passage) -> None:
    """The handler; its answer (or refusal); the engine's events published.

    The handler runs on the event loop, not in a worker thread: the engine serialises every
    call under the store's lock anyway, so a thread bought no parallelism, only a hop there
    and back and hand-offs of the interpreter lock with the loop for every request (a
    quarter of the sandbox's CPU in a 100-symbol apply). An engine call takes a millisecond
    or so; the control API's long calls (copying the database, adding symbols) still run in
    the thread pool, and an API call that meets one waits for the store's lock there.
    """
    exchange = parts.exchange
    call = Call(
        exchange, passage.user_id, dict(passage.request.path_params), passage.query, passage.body
    )
    events: list[tuple[str, str | None, Any]] = []

    try:
        try:
            data = run_handler(parts, passage.endpoint, call, passage.private_write)
        finally:
            # The engine's events, and any a concurrent call left.
            events.extend(exchange.drain_events())
        passage.outcome = parts.envelopes.answer(data, headers=passage.headers)
    except Rejection as rejection:
        passage.outcome = parts.envelopes.rejection(passage.scope, rejection, passage.headers)
    finally:
        await parts.stream.publish(events)


async def hold_after(parts: Parts, passage: Passage) -> None:
    """Fault `hold` "after": executed, answered only on release."""
    if passage.private_write and parts.faults.should_hold(passage.path, "after"):
        await parts.faults.hold_here(passage.path, "after")


async def after_commit(parts: Parts, passage: Passage) -> Response | None:
    """Faults `drop_after_commit`, `garbage_after_commit`: the executed call's answer is lost."""
    if not passage.private_write:
        return None
    after = parts.faults.after_commit()
    if after is AfterCommit.DELIVER:
        return None
    parts.faults.record(after.value, path=passage.path)
    if after is AfterCommit.CUT:
        return CutResponse(passage.scope)
    if after is AfterCommit.BAD_GATEWAY:
        return parts.envelopes.error(
            passage.scope, "INTERNAL_ERROR", "bad gateway (injected fault)", 502, passage.headers
        )
    if after is AfterCommit.GARBAGE_500:
        return Response(b"<html><body>500 oops</body></html>", 500, media_type="text/html")
    assert after is AfterCommit.TRUNCATED_200 and passage.outcome is not None
    return Response(bytes(passage.outcome.body)[:17], 200, media_type="application/json")


STEPS: tuple[Step, ...] = (
    latency,
    rate_limit,
    storm_429,
    read_request_body,
    authenticate,
    parse_request_body,
    fail_before,
    drop_before,
    hold_before,
    hold_delay,
    execute,
    hold_after,
    after_commit,
)


def run_handler(parts: Parts, endpoint: Endpoint, call: Call, private_write: bool) -> Any:
    """The handler with the engine-side faults around it (in the engine's thread)."""
    faults, exchange = parts.faults, parts.exchange
    if private_write:
        fault_effects.before_execute(
            faults, exchange, call.user_id, endpoint.path, call.path_params, call.body
        )
        if not faults.profile.instant_fills:
            return endpoint.handler(call)
        with exchange._unit():  # placement and instant fill: one transaction
            data = endpoint.handler(call)
            return fault_effects.after_execute(faults, exchange, call.user_id, endpoint.path, data)
    if endpoint.scope is None:
        return endpoint.handler(call)
    lagged = parts.replica.reader()  # one copy for the whole read, page shift included
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


class Pipeline:
    """Runs `steps` for each request of an endpoint; answers what ends it, or the outcome."""

    def __init__(self, parts: Parts, steps: Sequence[Step] = STEPS) -> None:
        self.parts = parts
        self.steps = tuple(steps)

    def handler(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            query = Query(request.scope.get("query_string", b"").decode("latin-1"))
            passage = Passage(endpoint, request, query)
            envelopes = self.parts.envelopes
            try:
                for step in self.steps:
                    answer = await step(self.parts, passage)
                    if answer is not None:
                        return answer
            except Rejection as rejection:
                return envelopes.rejection(request.scope, rejection, passage.headers)
            except Exception:
                logger.exception("unexpected error serving %s %s", endpoint.method, endpoint.path)
                return envelopes.error(
                    request.scope, "INTERNAL_ERROR", "the server failed", 500, passage.headers
                )
            assert passage.outcome is not None, "the steps end with `execute` and after it"
            return passage.outcome

        return handle
