"""`reconciler doctor`: what the exchange at a base URL says, and whether we can read it.

Run before the first apply on a real account: every response shape the client reads is our
reading of a documentation that shows request bodies only. The doctor makes at most one call
per read endpoint (one page, one item), never a write, and reports:

- signing and clock: whether a signed read is accepted, and the server clock against ours;
- the key's scopes as far as a read-only check can tell (`read`; `trade` needs a write);
- the rate-limit headers and the unit `X-RateLimit-Reset` was read in (decided by range);
- each read endpoint's shape: the container, every field found (under which name, in which
  form: e.g. `createdAt` as `created_at`, epoch seconds), optional fields missing, extras
  ignored, or the one-line error that would stop a plan;
- the Socket.IO handshake and, within a short wait, one event.

Nothing reported is a value of the account: names, forms, counts, times and headers only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from reconciler.levret.client import LevretClient
from reconciler.levret.endpoints import ANSWERS, endpoint_label
from reconciler.levret.errors import LevretError
from reconciler.levret.fields import SECONDS_BELOW, WireFormatError, read_decimal, read_time_ms
from reconciler.levret.parse import Parsed, read_list, read_one, read_page
from reconciler.levret.settings import ClientSettings

__all__ = ["Check", "DoctorReport", "EndpointShape", "diagnose", "render_text"]

SKEW_LIMIT_MS = 5000  # the exchange refuses a signature stamped further ahead than this


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class EndpointShape:
    endpoint: str
    ok: bool
    container: str = ""
    found: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class DoctorReport:
    base_url: str
    checks: list[Check] = field(default_factory=list)
    endpoints: list[EndpointShape] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks) and all(e.ok for e in self.endpoints)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def _shape(label: str, parsed: Parsed[Any]) -> EndpointShape:
    found: dict[str, str] = {}
    missing: set[str] = set()
    extras: set[str] = set()
    for entity in parsed.entities:
        for name, (key, form) in entity.found.items():
            found.setdefault(name, f"{key} ({form})" if key != name else form)
        missing.update(entity.absent)
        extras.update(entity.extras())
    missing -= set(found)
    return EndpointShape(
        label, True, parsed.container, found, sorted(missing), sorted(extras), None
    )


async def _inspect(
    client: LevretClient, path: str, query: Mapping[str, object]
) -> tuple[EndpointShape, Any]:
    label = endpoint_label("GET", path)
    answer = ANSWERS[label]
    try:
        data = await client.read_raw(path, query)
    except LevretError as error:
        return EndpointShape(label, False, error=str(error)), None
    try:
        parsed: Parsed[Any]
        if answer.shape == "one":
            parsed = read_one(label, data, answer.reader)
        elif answer.shape == "list":
            parsed = read_list(label, data, answer.reader)
        else:
            parsed = read_page(label, data, answer.reader)
    except WireFormatError as error:
        return EndpointShape(label, False, error=str(error)), None
    return _shape(label, parsed), parsed.value


def _reset_unit(value: str) -> str:
    number = read_decimal(value)
    if number is None:
        return f"unreadable ({len(value)} characters)"
    if number[0] < 10**9:
        return "seconds from now"
    return "epoch seconds" if number[0] < SECONDS_BELOW else "epoch ms"


def _clock_check(client: LevretClient) -> Check:
    last = client.last_answer
    if last is None:
        return Check("clock", False, "no answer to read the server time from")
    read = read_time_ms(last.envelope_timestamp)
    if read is None:
        source = "Date header" if "date" in last.headers else None
        if source is None:
            return Check("clock", False, "no envelope timestamp and no Date header")
        return Check(
            "clock",
            True,
            f"server time from the Date header; applied offset {client.clock.offset_ms} ms",
        )
    server_ms, form = read
    midpoint = (last.sent_ms + last.received_ms) // 2
    skew = server_ms - midpoint
    ok = abs(skew) < SKEW_LIMIT_MS or abs(skew - client.clock.offset_ms) < SKEW_LIMIT_MS
    return Check(
        "clock",
        ok,
        f"envelope timestamp read as {form}; server minus local {skew:+d} ms "
        f"(round trip {last.received_ms - last.sent_ms} ms); the client signs with offset "
        f"{client.clock.offset_ms:+d} ms",
    )


def _rate_check(client: LevretClient) -> Check:
    last = client.last_answer
    headers = last.headers if last is not None else {}
    limit = headers.get("x-ratelimit-limit")
    remaining = headers.get("x-ratelimit-remaining")
    reset = headers.get("x-ratelimit-reset")
    if limit is None and remaining is None and reset is None:
        return Check(
            "rate limit", True, "no X-RateLimit-* headers; the client paces by its own budget"
        )
    parts = [f"limit {limit}", f"remaining {remaining}"]
    if reset is not None:
        parts.append(f"reset {reset} read as {_reset_unit(reset)}")
    return Check("rate limit", True, ", ".join(parts))


async def _stream_check(settings: ClientSettings, wait_s: float) -> Check:
    from reconciler.levret.stream import LevretStream

    stream = LevretStream(settings, connect_timeout=min(5.0, max(wait_s, 1.0)))
    try:
        await stream.connect()
    except LevretError as error:
        return Check("stream", False, f"Socket.IO handshake failed: {error}")
    try:
        event = await asyncio.wait_for(stream.next_event(), timeout=wait_s)
        seen = f"one event: {event.name} ({type(event.payload).__name__} read)"
    except TimeoutError:
        seen = f"no event within {wait_s:g} s (the account was quiet; none is required)"
    except Exception as error:  # a payload the stream could not read
        return Check("stream", False, f"handshake ok, but an event was unreadable: {error}")
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
    return Check("stream", True, f"Socket.IO handshake ok; {seen}")


async def diagnose(
    settings: ClientSettings,
    *,
    stream_wait_s: float = 3.0,
    stream: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DoctorReport:
    """Every check, in order; bounded: one call per read endpoint, one page each.

    `transport` replaces the network (tests answer in shapes no sandbox style has).
    """
    report = DoctorReport(base_url=settings.base_url)
    bounded = settings.model_copy(update={"max_attempts": 2})
    async with LevretClient(bounded, transport=transport) as client:
        shape, overview = await _inspect(client, "/wallet/account-overview", {})
        signed_ok = overview is not None or (shape.error or "").find("BAD_PAYLOAD") >= 0
        report.checks.append(
            Check(
                "signing",
                signed_ok,
                "a signed read was accepted"
                if signed_ok
                else f"a signed read was refused: {shape.error}",
            )
        )
        report.checks.append(_clock_check(client))
        report.checks.append(
            Check(
                "scopes",
                signed_ok,
                "read: yes; trade: not checked (the doctor never writes)"
                if signed_ok
                else "read: refused",
            )
        )
        report.checks.append(_rate_check(client))
        report.endpoints.append(shape)
        reads: list[tuple[str, Callable[[Any], dict[str, object]]]] = []
        symbols_shape, specs = await _inspect(client, "/market/supported-symbols", {})
        report.endpoints.append(symbols_shape)
        symbol = specs[0].symbol if specs else None
        if symbol is not None:
            reads += [
                ("/market/market-stats", lambda s: {"symbol": s}),
                ("/market/orderbook", lambda s: {"symbol": s, "depth": 1}),
                ("/market/candles", lambda s: {"symbol": s, "interval": "1m", "limit": 1}),
            ]
        for path, query in reads:
            report.endpoints.append((await _inspect(client, path, query(symbol)))[0])
        user = {"userId": settings.user_id, "page": 1, "pageSize": 10}
        orders_shape, orders = await _inspect(client, "/order/open", user)
        report.endpoints.append(orders_shape)
        report.endpoints.append((await _inspect(client, "/positions", {}))[0])
        report.endpoints.append((await _inspect(client, "/wallet/balance-history", {"days": 1}))[0])
        page = {"page": 1, "pageSize": 10}
        trades_shape, trades = await _inspect(client, f"/trade/user/{settings.user_id}", page)
        report.endpoints.append(trades_shape)
        follow_ups: list[Awaitable[tuple[EndpointShape, Any]]] = []
        if orders is not None and orders.items:
            follow_ups.append(_inspect(client, f"/order/{orders.items[0].id}", {}))
        order_ids = [t.order_id for t in (trades.items if trades is not None else []) if t.order_id]
        if order_ids:
            follow_ups.append(_inspect(client, f"/trade/order/{order_ids[0]}", page))
        for pending in follow_ups:
            report.endpoints.append((await pending)[0])
    if stream:
        report.checks.append(await _stream_check(settings, stream_wait_s))
    return report


def render_text(report: DoctorReport) -> str:
    lines = [f"reconciler doctor: {report.base_url}", ""]
    for check in report.checks:
        lines.append(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    lines.append("")
    for shape in report.endpoints:
        if not shape.ok:
            lines.append(f"FAIL {shape.endpoint}: {shape.error}")
            continue
        lines.append(f"ok   {shape.endpoint}: {shape.container}")
        found = ", ".join(f"{name} as {how}" for name, how in shape.found.items())
        lines.append(f"       found: {found or 'nothing (empty)'}")
        if shape.missing:
            lines.append(f"       missing (not needed): {', '.join(shape.missing)}")
        if shape.extras:
            lines.append(f"       ignored extras: {', '.join(shape.extras)}")
    lines.append("")
    lines.append(
        "Everything the reconciler needs was understood."
        if report.ok
        else "Something the reconciler needs was not understood: fix it before an apply."
    )
    return "\n".join(lines) + "\n"
