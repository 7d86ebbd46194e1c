"""Read your own writes: an accepted call is a fact until the account's reads show it.

An exchange answers reads from replicas that lag its matching engine. Right after an order
is accepted, the reads of positions and open orders may still show the account as it was a
few seconds earlier. Re-planning from such a read would send the same order again, and
again, until the replica catches up. So every write the exchange accepted leaves an
`Expectation`: what a read must show before it is trusted. Apply waits for every expectation
of a pass before it re-plans or verifies (`VisibilityTracker.await_snapshot`), and before a
read inside a pass that a later call depends on (`VisibilityTracker.fresh_position`).

What "visible" means, per call (the exchange's own update time, `updated_at`, is the
watermark, so no local clock is compared with the exchange's):

- a placed order: listed open with `updated_at` at least the accepted answer's, or, when it
  is not listed, a read of that one order finds it no longer open (filled or cancelled); a fill
  (in the answer or found later) makes the symbol's position a watermark too;
- a position change (a filled order, leverage, margin, TP/SL): the symbol's position has
  `updated_at` at least the answer's; no position at all only counts when the call leaves the
  symbol flat (a close, a reduce-only fill), or changed a position that existed (so a lagging
  read would still show it);
- a cancel: the order is no longer listed open;
- a close: that position id is no longer listed, or it shows an update after the close.

A read that does not show an expectation is not evidence of anything: apply waits, polling
with backoff, up to `timeout_s`, and then stops the symbol (exit 5) naming the ids it could
not see. It never sends again. The tracker also measures how long the exchange took to show
writes; settlement uses that (`lag_allowance_s`) before it believes that an unknown call is
absent, because a read taken inside the lag cannot prove absence.

The tracker outlives one apply: `watch --self-heal` passes the same one to every cycle, so
a write accepted in one cycle and not yet visible holds the next cycle's heal of that symbol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, assert_never

import anyio

from reconciler.errors import NotFound, VenueError
from reconciler.model.account import CancelAllResult, Order, Position
from reconciler.model.intents import (
    AdjustMargin,
    Answer,
    CancelAllOrders,
    CancelOrder,
    ClosePosition,
    Intent,
    PlaceOrder,
    SetLeverage,
    SetTpSl,
)
from reconciler.model.plan import Action
from reconciler.model.snapshot import Snapshot

__all__ = [
    "DEFAULT_VISIBILITY_TIMEOUT_S",
    "Expectation",
    "VisibilityClient",
    "VisibilityTracker",
    "expectation_for",
]

DEFAULT_VISIBILITY_TIMEOUT_S = 30.0

_OPEN_STATUSES = frozenset({"open", "partially_filled"})
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 2.0


class VisibilityClient(Protocol):
    """The reads visibility needs; `LevretClient` provides them."""

    async def positions(self, symbol: str | None = None) -> list[Position]: ...

    async def get_order(self, order_id: str) -> Order: ...


def _wall_s() -> float:
    return time.time()


@dataclass(frozen=True)
class Expectation:
    """What a read must show for one accepted write to count as visible.

    `updated_at` is the exchange's update time of the entity the answer returned (None when the
    answer had none: identity checks only). `accepted_at_s` is local wall time, used only to
    measure the lag.
    """

    symbol: str
    kind: str
    accepted_at_s: float
    order_id: str | None = None
    order_resting: bool = False
    cancelled_ids: tuple[str, ...] = ()
    position_id: str | None = None
    moves_position: bool = False
    flat_is_visible: bool = False
    updated_at: int | None = None
    seen_before: bool = False  # already seen once (by settlement): says nothing of the lag
    # Position versions (id, updated_at) read before this write: a read showing one of them
    # lags the write, whatever the exchange's clock did in between.
    stale_versions: frozenset[tuple[str, int]] = frozenset()

    @property
    def measures_lag(self) -> bool:
        """Whether a read from before the write would fail this check (so seeing it tells
        something about the lag); a filled market order with no position stamp would not."""
        return not self.seen_before and (
            self.order_resting
            or bool(self.cancelled_ids)
            or (self.moves_position and self.updated_at is not None)
        )

    def describe(self) -> str:
        if self.order_id is not None:
            return f"{self.kind} order {self.order_id}"
        if self.cancelled_ids:
            return f"{self.kind} of order(s) {', '.join(self.cancelled_ids)}"
        if self.position_id is not None:
            return f"{self.kind} on position {self.position_id}"
        return self.kind


def expectation_for(
    action: Action, sent: Intent, answer: Answer, *, accepted_at_s: float
) -> Expectation | None:
    """The expectation an accepted answer leaves; None when it changed nothing to wait for.

    `sent` is the intent as carried out (the new position's id filled in), `answer` what the
    venue answered it with.
    """
    symbol, kind = action.symbol, action.kind
    match sent:
        case CancelAllOrders():
            if not isinstance(answer, CancelAllResult) or not answer.cancelled:
                return None
            ids = tuple(answer.cancelled)
            return Expectation(symbol, kind, accepted_at_s, cancelled_ids=ids)
        case CancelOrder():
            if not isinstance(answer, Order):
                return None
            return Expectation(symbol, kind, accepted_at_s, cancelled_ids=(answer.id,))
        case PlaceOrder() | ClosePosition() if isinstance(answer, Order):
            # the order placed, or the closing order a close was answered with
            closes = isinstance(sent, ClosePosition) or answer.reduce_only
            return Expectation(
                symbol,
                kind,
                accepted_at_s,
                order_id=answer.id,
                order_resting=answer.status in _OPEN_STATUSES,
                position_id=sent.position_id if isinstance(sent, ClosePosition) else None,
                moves_position=answer.filled_size != 0 or answer.status == "filled",
                flat_is_visible=closes or action.after.get("side") == "flat",
                updated_at=answer.updated_at,
            )
        case SetLeverage() | AdjustMargin() | SetTpSl() if isinstance(answer, Position):
            # the position as the exchange changed it
            return Expectation(
                symbol,
                kind,
                accepted_at_s,
                position_id=answer.id,
                moves_position=True,
                flat_is_visible=True,  # it existed: a lagging read would still show it
                updated_at=answer.updated_at,
            )
        case ClosePosition():
            return Expectation(
                symbol,
                kind,
                accepted_at_s,
                position_id=sent.position_id,
                moves_position=True,
                flat_is_visible=True,
            )
        case PlaceOrder() | SetLeverage() | AdjustMargin() | SetTpSl():
            return None  # an answer of another kind: nothing known to wait for
        case _:
            assert_never(sent)


@dataclass
class _Lag:
    """Bounds on how long the exchange takes to show an accepted write, from what was seen."""

    lower_s: float = 0.0  # some write was still invisible this long after it was accepted
    upper_s: float | None = None  # every write seen was visible within this long

    def estimate_s(self) -> float | None:
        """None until some write was seen: a lower bound alone says the lag is longer."""
        if self.upper_s is None:
            return None
        return max(self.lower_s, self.upper_s)


@dataclass
class VisibilityTracker:
    """Accepted writes not yet proven visible, and what the exchange's lag looks like."""

    timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
    clock: Callable[[], float] = _wall_s
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    pending: list[Expectation] = field(default_factory=list)
    _closed_orders: dict[str, Order] = field(default_factory=dict)
    # Waited for once for the whole timeout: checked again at every read, never waited for.
    _given_up: list[Expectation] = field(default_factory=list)
    _lag: _Lag = field(default_factory=_Lag)
    # Position versions (id, updated_at) read so far, by symbol.
    _versions: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def expect(self, expectation: Expectation | None) -> None:
        """Remember an accepted write until a read shows it."""
        if expectation is None:
            return
        symbol = expectation.symbol
        answered = (expectation.position_id or "", expectation.updated_at or 0)
        if answered in self._versions.get(symbol, ()):
            # The write left the position's version as it was (a leverage it already had): a
            # read from before it shows the same, so it makes no read stale and seeing it says
            # nothing about the lag.
            expectation = replace(expectation, seen_before=True)
        else:
            known = frozenset(self._versions.get(symbol, ()))
            expectation = replace(expectation, stale_versions=known)
        self.pending.append(expectation)

    def note_snapshot(self, snapshot: Snapshot) -> None:
        """A read the coming calls are planned from: its positions precede those calls."""
        self.note_positions(snapshot.positions.values())

    def note_positions(self, positions: Iterable[Position]) -> None:
        for position in positions:
            self._versions.setdefault(position.symbol, set()).add(
                (position.id, position.updated_at)
            )

    @staticmethod
    def _shows(
        position: Position | None, expectation: Expectation, updated_at: int, *, flat_ok: bool
    ) -> bool:
        """Whether `position` (the symbol's, or None) is at least as new as a write at
        `updated_at`: not a version read before the write, and not stamped earlier."""
        if position is None:
            return flat_ok
        if (position.id, position.updated_at) in expectation.stale_versions:
            return False
        return position.updated_at >= updated_at

    def pending_for(self, symbol: str) -> list[Expectation]:
        return [e for e in self.pending if e.symbol == symbol]

    def lag_allowance_s(self) -> float:
        """How long after a send a read must be taken before it can prove the send absent.

        Twice the lag measured in this run (writes seen, and writes still unseen after a
        while); the whole timeout while nothing has been measured: absence is then believed
        only once the exchange has had the longest lag we accept to show it.
        """
        estimate = self._lag.estimate_s()
        if estimate is None:
            return self.timeout_s
        return min(2 * estimate, self.timeout_s)

    # ---- whole-account barrier

    async def await_snapshot(
        self,
        client: VisibilityClient,
        snapshot: Snapshot,
        reread: Callable[[], Awaitable[Snapshot]],
    ) -> tuple[Snapshot, dict[str, list[Expectation]]]:
        """A snapshot that shows every pending write, re-read with backoff until it does.

        Returns the snapshot and, by symbol, the expectations still unseen when the timeout
        passed (empty when all were seen). Seen ones are dropped from `pending`.
        """
        deadline = self.clock() + self.timeout_s
        wait = _FIRST_POLL_S
        while True:
            self.note_snapshot(snapshot)
            unseen = await self._unseen(client, snapshot, self.pending)
            self.pending = [e for e in self.pending if e in unseen]
            self._given_up = [e for e in self._given_up if e in unseen]
            waiting = [e for e in unseen if e not in self._given_up]
            if not waiting or self.clock() >= deadline:
                self._given_up.extend(waiting)
                by_symbol: dict[str, list[Expectation]] = {}
                for expectation in unseen:
                    by_symbol.setdefault(expectation.symbol, []).append(expectation)
                return snapshot, by_symbol
            await self.sleep(min(wait, max(deadline - self.clock(), 0.0)))
            wait = min(wait * 2, _MAX_POLL_S)
            snapshot = await reread()

    async def _unseen(
        self, client: VisibilityClient, snapshot: Snapshot, expectations: Iterable[Expectation]
    ) -> list[Expectation]:
        unseen: list[Expectation] = []
        now = self.clock()
        for expectation in expectations:
            try:
                seen = await self._seen(client, snapshot, expectation)
            except VenueError:
                seen = False  # a failed read shows nothing, least of all absence
            self._observe(expectation, seen, now)
            if not seen:
                unseen.append(expectation)
        return unseen

    def _observe(self, expectation: Expectation, seen: bool, now: float) -> None:
        """Fold one check into the lag bounds; only a check a stale read could fail counts."""
        if not expectation.measures_lag:
            return
        elapsed = max(now - expectation.accepted_at_s, 0.0)
        if seen:
            upper = self._lag.upper_s
            self._lag.upper_s = elapsed if upper is None else max(upper, elapsed)
        else:
            self._lag.lower_s = max(self._lag.lower_s, elapsed)

    async def _seen(
        self, client: VisibilityClient, snapshot: Snapshot, expectation: Expectation
    ) -> bool:
        listed = {order.id: order for order in snapshot.orders(expectation.symbol)}
        if any(order_id in listed for order_id in expectation.cancelled_ids):
            return False
        position = snapshot.positions.get(expectation.symbol)
        if expectation.order_id is not None:
            visible, order = await self._order_now(client, expectation, listed)
            if not visible:
                return False
            if (
                order is not None
                and order.filled_size > 0
                and not self._shows(
                    position, expectation, order.updated_at, flat_ok=order.reduce_only
                )
            ):
                return False
        if (
            expectation.kind == "close_position"
            and position is not None
            and position.id == expectation.position_id
        ):
            return expectation.updated_at is not None and (
                position.updated_at >= expectation.updated_at
            )
        if expectation.moves_position:
            return self._shows(
                position,
                expectation,
                expectation.updated_at or 0,
                flat_ok=expectation.flat_is_visible,
            )
        return True

    async def _order_now(
        self, client: VisibilityClient, expectation: Expectation, listed: Mapping[str, Order]
    ) -> tuple[bool, Order | None]:
        """Whether the order shows its accepted state yet, and the order as last seen.

        No order: the answer already said it is no longer resting (a filled market order) and
        the listing agrees; its fill is checked through the position watermark.
        """
        order_id = expectation.order_id or ""
        floor = expectation.updated_at or 0
        if order_id in listed:
            order = listed[order_id]
            return order.updated_at >= floor, order
        if not expectation.order_resting:
            return True, None
        known = self._closed_orders.get(order_id)
        if known is not None:
            return True, known
        try:
            order = await client.get_order(order_id)
        except NotFound:
            return False, None
        if order.status in _OPEN_STATUSES or order.updated_at < floor:
            return False, order  # the listing lags the lookup, or both lag the write
        self._closed_orders[order_id] = order
        return True, order

    # ---- one symbol, inside a pass

    async def fresh_positions(
        self, client: VisibilityClient, symbols: Iterable[str]
    ) -> dict[str, Position | None]:
        """The positions of `symbols` from one read of every position, for each symbol the
        read shows every accepted write on; a symbol it does not is left out (its caller
        reads it alone, `fresh_position`, which waits for it)."""
        wanted = list(dict.fromkeys(symbols))
        read: dict[str, Position] = {}
        for listed in await client.positions():
            read.setdefault(listed.symbol, listed)  # the first, as `fresh_position` takes
        now = self.clock()
        shown: dict[str, Position | None] = {}
        for symbol in wanted:
            position = read.get(symbol)
            if not self._unseen_in(position, self._watermarks(symbol), now):
                shown[symbol] = position
        return shown

    def _watermarks(self, symbol: str) -> list[Expectation]:
        """The accepted writes a read of `symbol`'s position must show."""
        return [e for e in self.pending if e.symbol == symbol and e.moves_position]

    def _unseen_in(
        self, position: Position | None, watermarks: list[Expectation], now: float
    ) -> list[Expectation]:
        """The `watermarks` a read of the position (or of none) does not show yet; the read
        is noted, and each check folded into the lag bounds."""
        self.note_positions([] if position is None else [position])
        unseen = [
            e
            for e in watermarks
            if not self._shows(position, e, e.updated_at or 0, flat_ok=e.flat_is_visible)
        ]
        for expectation in watermarks:
            self._observe(expectation, expectation not in unseen, now)
        return unseen

    async def fresh_position(self, client: VisibilityClient, symbol: str) -> Position | None:
        """The symbol's position as read once it shows every accepted write on the symbol.

        Raises `TimeoutError` naming the unseen writes when the timeout passes first.
        """
        watermarks = self._watermarks(symbol)
        deadline = self.clock() + self.timeout_s
        wait = _FIRST_POLL_S
        while True:
            position = next((p for p in await client.positions(symbol) if p.symbol == symbol), None)
            now = self.clock()
            unseen = self._unseen_in(position, watermarks, now)
            if not unseen:
                return position
            if now >= deadline or all(e in self._given_up for e in unseen):
                self._given_up.extend(e for e in unseen if e not in self._given_up)
                names = ", ".join(e.describe() for e in unseen)
                raise TimeoutError(
                    f"{symbol}: accepted {names} not visible after {self.timeout_s:g} s"
                )
            await self.sleep(min(wait, max(deadline - now, 0.0)))
            wait = min(wait * 2, _MAX_POLL_S)
