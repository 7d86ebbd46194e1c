"""Settling a call whose outcome is unknown: look at the account, never resend blind.

A dropped response to a placed order leaves two possible worlds: the order exists, or it does
not. Sending it again is right in one and doubles the position in the other. So apply asks
the account instead, with reads that are safe to repeat:

- an order: open orders and fills since the send time (less a clock-skew allowance) for an
  order that is not one we already knew and that matches the intent (side, type, size,
  price, reduce-only); its position change is recorded as corroboration;
- margin: the position's isolated margin against the baseline read just before the call;
- leverage, TP/SL: whether the position now shows the values asked for;
- a close: whether that position id is gone; a cancel: whether the order is still open.

Evidence of execution ends the search at once. Absence of evidence is only believed after
two consistent reads a visibility window apart, so an effect that the exchange commits a
moment late is not mistaken for "not executed". State that changed in a way the call does
not explain (an unknown order, a margin moved by another amount) stays `unknown`: apply then
stops touching that symbol and says so, because guessing costs money.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, assert_never

import anyio

from reconciler.apply.journal import Outcome
from reconciler.errors import NotFound, VenueError
from reconciler.model.account import Order, Position, Trade
from reconciler.model.intents import (
    AdjustMargin,
    CancelAllOrders,
    CancelOrder,
    ClosePosition,
    Intent,
    PlaceOrder,
    PositionIntent,
    SetLeverage,
    SetTpSl,
)
from reconciler.model.plan import Action

__all__ = [
    "Baseline",
    "SettleClient",
    "SettleConfig",
    "Settlement",
    "needs_baseline",
    "read_position",
    "recent_fill_order_ids",
    "settle",
    "take_baseline",
]

_OPEN_STATUSES = frozenset({"open", "partially_filled"})


# Reads taken inside the exchange's read lag, beyond `max_reads`, before the search gives up.
_EARLY_READS = 8


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SettleClient(Protocol):
    """The reads settlement needs; `LevretClient` provides them."""

    async def positions(self, symbol: str | None = None) -> list[Position]: ...

    def iter_open_orders(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Order]: ...

    def iter_user_trades(
        self, symbol: str | None = None, *, start_time: int | None = None
    ) -> AsyncIterator[Trade]: ...

    async def get_order(self, order_id: str) -> Order: ...


@dataclass(frozen=True)
class SettleConfig:
    """How hard to look before believing a call did not execute.

    `visibility_window_s` is the wait between reads; `max_reads` bounds the search (at least
    2: one read alone never proves absence); `clock_skew_ms` widens "since the send time" so a
    server clock a little behind ours does not hide the order we are looking for;
    `visibility_timeout_s` is the longest read lag apply waits out for its own accepted writes
    (`--visibility-timeout`), and so the longest it waits before absence can be believed.
    """

    visibility_window_s: float = 1.0
    max_reads: int = 4
    clock_skew_ms: int = 5_000
    visibility_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_reads < 2:
            raise ValueError("max_reads must be at least 2: absence needs two consistent reads")
        if self.visibility_window_s < 0 or self.clock_skew_ms < 0 or self.visibility_timeout_s < 0:
            raise ValueError(
                "visibility_window_s, clock_skew_ms and visibility_timeout_s must not be negative"
            )


@dataclass(frozen=True)
class Baseline:
    """The symbol before an unsafe call, to tell the call's effect from the past.

    `old_order_ids` are orders that existed before the call: open ones, and ones with recent
    fills (a closing order whose answer was lost is known to nobody else). With one call in
    flight per symbol, any other order that appears afterwards is the call's, or unexplained.
    It may be older than the call (apply builds it from the pass's snapshot, see
    `recent_fill_order_ids`) as long as the orders placed since are passed to `settle` as
    `known_order_ids`: a missing old id can only add a candidate (a match, or an unexplained
    order that keeps the outcome unknown), never make an executed call look absent.
    """

    position: Position | None
    old_order_ids: frozenset[str] = frozenset()

    def to_record(self) -> dict[str, Any]:
        return {
            "position": _position_record(self.position),
            "old_order_ids": sorted(self.old_order_ids),
        }


@dataclass(frozen=True)
class Settlement:
    """What the account showed: executed (True), not executed (False) or still unknown (None)."""

    executed: bool | None
    evidence: dict[str, Any]
    reads: int
    order_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def outcome(self) -> Outcome:
        if self.executed is None:
            return "unknown"
        return "settled_executed" if self.executed else "settled_not_executed"


@dataclass(frozen=True)
class _Observation:
    verdict: bool | None  # True: effect seen; False: no sign of it; None: unexplained change
    evidence: dict[str, Any]
    state: str  # digest of what was read, to tell whether two reads agree
    order_ids: frozenset[str] = frozenset()


def needs_baseline(action: Action) -> bool:
    """Orders and margin moves are judged against the state just before they were sent."""
    return action.kind in ("place_order", "adjust_margin")


async def take_baseline(
    client: SettleClient, action: Action, *, now_ms: int, config: SettleConfig | None = None
) -> Baseline:
    """Read what settlement of `action` would compare against; call it just before sending."""
    config = config or SettleConfig()
    position = await _position_of(client, action.symbol)
    if action.kind != "place_order":
        return Baseline(position=position)
    ids = {order.id async for order in client.iter_open_orders(action.symbol)}
    since = now_ms - 2 * config.clock_skew_ms
    fills = client.iter_user_trades(action.symbol, start_time=since)
    ids |= {t.order_id async for t in fills if t.order_id is not None}
    return Baseline(position=position, old_order_ids=frozenset(ids))


async def read_position(client: SettleClient, symbol: str) -> Position | None:
    """The symbol's open position now, or None (one read)."""
    return await _position_of(client, symbol)


async def recent_fill_order_ids(
    client: SettleClient, *, now_ms: int, config: SettleConfig | None = None
) -> dict[str, frozenset[str]]:
    """Orders with fills in the last `2 x clock_skew_ms`, by symbol: one read for the account.

    The part of a baseline that open orders cannot give: orders that already filled out (a
    closing order whose answer was lost is known to nobody else). `take_baseline` reads it per
    symbol; apply reads it once per pass and takes the rest from the pass's snapshot.
    """
    config = config or SettleConfig()
    since = now_ms - 2 * config.clock_skew_ms
    ids: dict[str, set[str]] = {}
    async for trade in client.iter_user_trades(start_time=since):
        if trade.order_id is not None:  # a liquidation or close fill names no order
            ids.setdefault(trade.symbol, set()).add(trade.order_id)
    return {symbol: frozenset(order_ids) for symbol, order_ids in ids.items()}


async def settle(
    client: SettleClient,
    action: Action,
    sent: Intent,
    *,
    sent_at_ms: int,
    baseline: Baseline | None,
    known_order_ids: Iterable[str] = (),
    config: SettleConfig | None = None,
    lag_allowance_s: float = 0.0,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock_ms: Callable[[], int] = _now_ms,
) -> Settlement:
    """Decide from reads alone whether `sent` (`action`'s intent as carried out) took effect.

    Never sends a mutation. Read failures count as inconclusive reads, not as absence.
    Absence needs two consistent reads both taken at least `lag_allowance_s` after the send:
    a read inside the exchange's read lag shows the account from before the call, whether or
    not it executed (`reconciler.apply.visibility` measures the lag).
    """
    config = config or SettleConfig()
    known = frozenset(known_order_ids)
    fresh_from_ms = sent_at_ms + int(lag_allowance_s * 1000)
    previous: _Observation | None = None
    evidence: dict[str, Any] = {}
    read = 0
    fresh_reads = 0
    early_wait = max(config.visibility_window_s, 0.05)
    while True:
        read += 1
        read_at_ms = clock_ms()
        fresh = read_at_ms >= fresh_from_ms
        fresh_reads += fresh
        try:
            observation = await _observe(client, action, sent, sent_at_ms, baseline, known, config)
        except VenueError as exc:
            evidence = {"read_error": str(exc)}
            previous = None
        else:
            evidence = observation.evidence
            if observation.verdict is True:
                return Settlement(True, evidence, read, observation.order_ids)
            if (
                fresh
                and observation.verdict is False
                and previous is not None
                and previous.verdict is False
                and previous.state == observation.state
            ):
                return Settlement(False, evidence, read)
            # Only a read taken after the lag may be the first of the consistent pair.
            previous = observation if fresh else None
        if fresh_reads >= config.max_reads or read >= config.max_reads + _EARLY_READS:
            if not fresh:
                evidence = {**evidence, "note": "every read was inside the exchange's read lag"}
            return Settlement(None, evidence, read)
        wait = config.visibility_window_s
        if not fresh:
            # Inside the lag a read can still show the effect (and end the search), never its
            # absence: poll there with doubling waits rather than sleep the whole lag at once.
            wait = min(early_wait, max(0.0, (fresh_from_ms - clock_ms()) / 1000))
            early_wait *= 2
        await sleep(wait)


async def _observe(
    client: SettleClient,
    action: Action,
    sent: Intent,
    sent_at_ms: int,
    baseline: Baseline | None,
    known: frozenset[str],
    config: SettleConfig,
) -> _Observation:
    match sent:
        case PlaceOrder():
            return await _observe_order(client, sent, sent_at_ms, baseline, known, config)
        case AdjustMargin():
            return await _observe_margin(client, sent, baseline)
        case SetLeverage():
            position = await _named_position(client, sent)
            now = None if position is None else position.leverage
            evidence = {"leverage": now, "wanted": sent.leverage}
            return _simple(now == sent.leverage, evidence)
        case SetTpSl():
            return await _observe_tpsl(client, sent)
        case ClosePosition():
            position = await _named_position(client, sent)
            return _simple(position is None, {"position": _position_record(position)})
        case CancelOrder():
            return await _observe_cancel(client, sent)
        case CancelAllOrders():
            still_open = [order.id async for order in client.iter_open_orders(sent.symbol)]
            return _simple(not still_open, {"open_order_ids": sorted(still_open)})
        case _:
            assert_never(sent)


def _simple(executed: bool, evidence: dict[str, Any]) -> _Observation:
    return _Observation(executed, evidence, _digest(evidence))


async def _observe_order(
    client: SettleClient,
    sent: PlaceOrder,
    sent_at_ms: int,
    baseline: Baseline | None,
    known: frozenset[str],
    config: SettleConfig,
) -> _Observation:
    since = sent_at_ms - config.clock_skew_ms
    old = known | (baseline.old_order_ids if baseline is not None else frozenset())
    open_orders = [order async for order in client.iter_open_orders(sent.symbol)]
    new_open = {o.id: o for o in open_orders if o.id not in old and o.created_at >= since}
    fills = [t async for t in client.iter_user_trades(sent.symbol, start_time=since)]
    candidates = dict(new_open)
    filled_ids = {t.order_id for t in fills if t.order_id is not None}
    for order_id in sorted(filled_ids - old - set(new_open)):
        # An order that filled at once is no longer open: its fills name it.
        order = await client.get_order(order_id)
        if order.created_at >= since:
            candidates[order.id] = order
    matching = sorted(o.id for o in candidates.values() if _order_matches(o, sent))
    unexplained = sorted(set(candidates) - set(matching))
    position = await _position_of(client, sent.symbol)
    evidence: dict[str, Any] = {
        "matching_orders": [_order_record(candidates[i]) for i in matching],
        "unexplained_orders": [_order_record(candidates[i]) for i in unexplained],
        "fills_since": len(fills),
        "since_ms": since,
        "position_before": _position_record(baseline.position if baseline else None),
        "position_now": _position_record(position),
        "position_change": str(
            _signed(position) - _signed(baseline.position if baseline else None)
        ),
    }
    state = _digest(
        {
            "open": sorted((o.id, str(o.filled_size)) for o in open_orders),
            "fills": sorted(t.id for t in fills),
            "position": _position_record(position),
        }
    )
    if matching:
        return _Observation(True, evidence, state, frozenset(matching))
    return _Observation(None if unexplained else False, evidence, state)


async def _observe_margin(
    client: SettleClient, sent: AdjustMargin, baseline: Baseline | None
) -> _Observation:
    position = await _named_position(client, sent)
    before = baseline.position if baseline is not None else None
    evidence: dict[str, Any] = {
        "margin_before": None if before is None else before.margin,
        "margin_now": None if position is None else position.margin,
    }
    if position is None or before is None or before.id != position.id:
        return _Observation(None, evidence, _digest(evidence))
    expected = sent.signed_amount
    delta = position.margin - before.margin
    evidence["expected_change"] = expected
    if delta == expected:
        return _Observation(True, evidence, _digest(evidence))
    return _Observation(False if delta == 0 else None, evidence, _digest(evidence))


async def _observe_tpsl(client: SettleClient, sent: SetTpSl) -> _Observation:
    position = await _named_position(client, sent)
    if position is None:
        return _Observation(None, {"position": None}, _digest({"position": None}))
    now = {"take_profit": position.take_profit_price, "stop_loss": position.stop_loss_price}
    wanted = {"take_profit": sent.take_profit, "stop_loss": sent.stop_loss}
    return _simple(now == wanted, {"now": now, "wanted": wanted})


async def _observe_cancel(client: SettleClient, sent: CancelOrder) -> _Observation:
    try:
        order = await client.get_order(sent.order_id)
    except NotFound:
        return _Observation(None, {"order": None}, _digest({"order": None}))
    # Filled in the meantime also leaves nothing resting, which is what the cancel was for.
    return _simple(order.status not in _OPEN_STATUSES, {"order": _order_record(order)})


async def _position_of(client: SettleClient, symbol: str) -> Position | None:
    for position in await client.positions(symbol):
        if position.symbol == symbol:
            return position
    return None


async def _named_position(client: SettleClient, sent: PositionIntent) -> Position | None:
    """The symbol's position if it is the one the intent names, else None."""
    position = await _position_of(client, sent.symbol)
    if position is None or position.id != sent.position_id:
        return None
    return position


def _order_matches(order: Order, sent: PlaceOrder) -> bool:
    if order.side != sent.side or order.order_type != sent.order_type:
        return False
    if order.size != sent.size:
        return False
    if sent.price is not None and order.price != sent.price:
        return False
    return order.reduce_only == sent.reduce_only


def _signed(position: Position | None) -> Decimal:
    if position is None:
        return Decimal(0)
    return position.size if position.side == "long" else -position.size


def _position_record(position: Position | None) -> dict[str, Any] | None:
    if position is None:
        return None
    return {
        "id": position.id,
        "side": position.side,
        "size": position.size,
        "leverage": position.leverage,
        "margin": position.margin,
        "take_profit": position.take_profit_price,
        "stop_loss": position.stop_loss_price,
    }


def _order_record(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "side": order.side,
        "order_type": order.order_type,
        "size": order.size,
        "price": order.price,
        "reduce_only": order.reduce_only,
        "status": order.status,
        "filled_size": order.filled_size,
        "created_at": order.created_at,
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
