"""Seeded, reproducible misbehaviour, so the client's retry and reconcile paths can be proven.

A profile is set through `POST /_sandbox/faults` and applies until cleared (`{}`) or reset.
Every random draw comes from one `random.Random(seed)`, so a test that sends the same requests
in the same order sees the same faults. Each fault ends with exactly one net effect (the
request executed once, or not at all), and every one that strikes is written to the fault log
(`GET /_sandbox/faults/log`), so a checker can count them and account for what they did.

Kinds, and where they strike ("mutating" means a private `POST /api/v1/...`):

- `fail_before` (probability): a mutating request is answered 503 `INTERNAL_ERROR` before
  anything executes.
- `drop_before` (probability): a mutating request's connection is cut before anything
  executes (the client sees a transport error after sending: outcome unknown, not executed).
- `drop_after_commit` (probability): the request executes and commits, then the answer (success
  or refusal alike) is lost.
  Half of the drops (seeded) answer 502 `INTERNAL_ERROR`; the other half *cut* the connection:
  the server writes a 502 status line and headers announcing a body, then closes the socket
  without sending it, so an HTTP client reports a transport error (httpx:
  `RemoteProtocolError`). This is as close to "the connection died after the commit" as an
  ASGI application can get without reaching into the server's transport.
- `garbage_after_commit` (probability): the request executes, then the answer is garbage:
  half (seeded) a 500 with an HTML body, half a 200 whose JSON is cut off mid-way.
- `latency_ms` `[lo, hi]`: every `/api/v1` request waits a uniform draw first.
- `clock_skew_ms`: the server's clock runs this far ahead (negative: behind) of the wall clock;
  it drives signature windows, the `Date` header, envelope timestamps, rate-limit resets and
  every timestamp the exchange writes (orders, fills, positions, ledger).
- `clock_jump_ms` with `clock_jump_after` (requests): after that many `/api/v1` requests the
  server's clock jumps by `clock_jump_ms` (on top of any skew), mid-run.
- `partial_fills`: the engine fills marketable orders only halfway (`partial_fill_ratio` 0.5).
- `instant_fills`: a limit order that would rest fills at once, in full, at its own price as
  a maker, in the same transaction: it is never seen open.
- `fill_before_cancel` (probability): a cancel of an open order loses the race against a
  fill: the order fills in full at its own price just before the cancel, which then answers
  `ORDER_NOT_OPEN`.
- `invisible_ms`: orders, fills and positions created less than this long ago are missing
  from reads (`/order/open`, `/order/:id` answers `NOT_FOUND`, `/trade/...`, `/positions`),
  as on an exchange whose read replicas lag. Only creation lags; `read_lag_ms` is the whole
  replica.
- `read_lag_ms`: every private read (`/positions`, `/order/open`, `/order/:id`, `/trade/...`,
  `/wallet/...`) answers from a replica showing the whole database as it was this long ago
  (`replica.py`); writes act on the live state; the stream is not delayed.
- `book_depth`, `resting_partial_fills`, `stop_slippage` (flags): the trading realism of
  `docs/sandbox.md` (takers walk the book; a mark move trades a finite volume at a resting
  order's price; TP/SL and liquidation close through the book). `profiles.py` bundles them.
- `storm_429` (probability) with `storm_length`: a private request starts a storm: it and the
  next `storm_length - 1` private requests are refused 429 `RATE_LIMITED` with
  `Retry-After: 0` and `X-RateLimit-*` headers (remaining 0); nothing executes.
- `page_shift` (probability): a paged read of page 2 or later is served as if the set's first
  item had left between the page reads: the items move back by one and `total` drops by one.
- `mark_jump` (probability) with `mark_jump_bps`: just before a mutating request on a symbol
  executes, the symbol's mark jumps by that many basis points, up or down (seeded), with every
  consequence of a mark move (resting fills, TP/SL, liquidation).
- `liquidate` (probability): just before a mutating request on a symbol executes, the user's
  position on it is liquidated from outside (its margin lost, no order or fill, a ledger line).
- `hold` `{"when": "before"|"delay"|"after", "path": "/order", "count": 1}`: the next
  `count` mutating requests on that path (a route template such as
  `/positions/{position_id}/margin`) wait until `POST /_sandbox/release`; `before` ones never
  execute (released, their connection is cut), `delay` ones execute on release (a call slow
  on its way while the market moves: the test changes prices in between), `after` ones
  execute first and are answered on release. `POST /_sandbox/held` waits until one is held:
  a test synchronises on it (e.g. to kill a client mid-call) without sleeping.

New kinds add a field to `FaultProfile` and a parser entry in its `_FIELDS`
(`faultprofile.py`), a hook on `FaultInjector` here, and a step of the request pipeline
(`pipeline.py`) that asks it at the right moment; what a fault does inside the engine's
transaction lives in `fault_effects.py`.
"""

from __future__ import annotations

import asyncio
import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconciler.sandbox.fault_effects import fill_resting_order, liquidate_position
from reconciler.sandbox.faultprofile import FaultProfile, Hold

__all__ = [
    "AfterCommit",
    "FaultInjector",
    "FaultProfile",
    "Hold",
    "fill_resting_order",
    "liquidate_position",
    "wall_clock_ms",
]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AfterCommit(enum.Enum):
    """What happens to the answer of a request that executed."""

    DELIVER = "deliver"
    BAD_GATEWAY = "bad_gateway"
    CUT = "cut"
    GARBAGE_500 = "garbage_500"
    TRUNCATED_200 = "truncated_200"


@dataclass
class _Held:
    path: str
    when: str
    released: asyncio.Event = field(default_factory=asyncio.Event)


class FaultInjector:
    """Holds the active profile and its RNG; the pipeline's steps ask it at each decision point.

    `on_profile` is called with the new profile whenever one is set, so the engine's trading
    config and the read replica follow it without this module knowing the engine.
    """

    def __init__(
        self,
        on_profile: Callable[[FaultProfile], None] = lambda _: None,
        wall_clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._on_profile = on_profile
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._profile = FaultProfile()
        self._rng = random.Random(0)
        self._requests = 0
        self._set_at = 0
        self._storm_left = 0
        self._holds_left = 0
        self._held: list[_Held] = []
        self._held_changed: asyncio.Event | None = None
        self._log: list[dict[str, Any]] = []

    @property
    def profile(self) -> FaultProfile:
        return self._profile

    def set(self, profile: FaultProfile) -> None:
        with self._lock:
            self._profile = profile
            self._rng = random.Random(profile.seed)
            self._requests = 0
            self._set_at = self.now_ms()
            self._storm_left = 0
            self._holds_left = profile.hold.count if profile.hold is not None else 0
        self._on_profile(profile)

    def clear(self) -> None:
        self.set(FaultProfile())
        self.release_all()
        with self._lock:
            self._log.clear()

    # --- the fault log ---

    def record(self, kind: str, **detail: Any) -> None:
        """Note one fault that struck (the checker accounts for its effect from here)."""
        with self._lock:
            self._log.append({"kind": kind, "time": self._wall_clock(), **detail})

    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # --- clock ---

    def now_ms(self) -> int:
        """The server's clock: the wall clock plus the configured skew (and a jump, once due)."""
        profile = self._profile
        jump = profile.clock_jump_ms if self._clock_jumped(profile) else 0
        return self._wall_clock() + profile.clock_skew_ms + jump

    def _clock_jumped(self, profile: FaultProfile) -> bool:
        return profile.clock_jump_ms != 0 and self._requests >= profile.clock_jump_after

    def count_request(self) -> None:
        """One more `/api/v1` request arrived (drives `clock_jump_after`)."""
        with self._lock:
            before = self._clock_jumped(self._profile)
            self._requests += 1
            if not before and self._clock_jumped(self._profile):
                self._log.append(
                    {
                        "kind": "clock_jump",
                        "time": self._wall_clock(),
                        "ms": self._profile.clock_jump_ms,
                    }
                )

    # --- draws ---

    def _draw(self, chance: float) -> bool:
        if chance <= 0:
            return False
        with self._lock:
            return self._rng.random() < chance

    def latency_s(self) -> float:
        low, high = self._profile.latency_ms
        if high == 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(low, high) / 1000

    def fail_before(self) -> bool:
        """Whether this mutating request is refused with a 5xx before it executes."""
        return self._draw(self._profile.fail_before)

    def drop_before(self) -> bool:
        """Whether this mutating request's connection is cut before it executes."""
        return self._draw(self._profile.drop_before)

    def after_commit(self) -> AfterCommit:
        """Whether the answer of this executed mutating request is delivered, lost or garbled."""
        profile = self._profile
        if profile.drop_after_commit <= 0 and profile.garbage_after_commit <= 0:
            return AfterCommit.DELIVER
        with self._lock:
            if profile.drop_after_commit > 0 and self._rng.random() < profile.drop_after_commit:
                return AfterCommit.CUT if self._rng.random() < 0.5 else AfterCommit.BAD_GATEWAY
            if (
                profile.garbage_after_commit > 0
                and self._rng.random() < profile.garbage_after_commit
            ):
                half = self._rng.random() < 0.5
                return AfterCommit.GARBAGE_500 if half else AfterCommit.TRUNCATED_200
        return AfterCommit.DELIVER

    def throttle(self) -> bool:
        """Whether this private request is refused by a 429 storm (one starting or under way)."""
        profile = self._profile
        with self._lock:
            if self._storm_left > 0:
                self._storm_left -= 1
                return True
            if profile.storm_429 > 0 and self._rng.random() < profile.storm_429:
                self._storm_left = profile.storm_length - 1
                self._log.append(
                    {
                        "kind": "storm_429",
                        "time": self._wall_clock(),
                        "length": profile.storm_length,
                    }
                )
                return True
        return False

    def page_shift(self) -> bool:
        return self._draw(self._profile.page_shift)

    def fill_before_cancel(self) -> bool:
        return self._draw(self._profile.fill_before_cancel)

    def liquidate(self) -> bool:
        return self._draw(self._profile.liquidate)

    def mark_jump(self) -> Decimal | None:
        """The factor the mark is multiplied by before this mutating request, or None."""
        profile = self._profile
        if profile.mark_jump <= 0:
            return None
        with self._lock:
            if self._rng.random() >= profile.mark_jump:
                return None
            sign = 1 if self._rng.random() < 0.5 else -1
        return 1 + Decimal(sign * profile.mark_jump_bps) / 10_000

    def invisible_since(self, now_ms: int) -> int | None:
        """Records created after this engine time are hidden from reads; None: all visible.

        Only records created since the profile was set lag: what existed before was already
        visible, so turning the fault on never hides old state.
        """
        window = self._profile.invisible_ms
        return None if window <= 0 else max(now_ms - window, self._set_at - 1)

    # --- holds (async: they run on the server's event loop) ---

    def should_hold(self, path: str, when: str) -> bool:
        hold = self._profile.hold
        if hold is None or hold.when != when or hold.path != path:
            return False
        with self._lock:
            if self._holds_left <= 0:
                return False
            self._holds_left -= 1
            return True

    async def hold_here(self, path: str, when: str) -> None:
        """Wait until released; `POST /_sandbox/held` callers learn that this request waits."""
        held = _Held(path, when)
        with self._lock:
            self._held.append(held)
            self._log.append({"kind": f"hold_{when}", "time": self._wall_clock(), "path": path})
        self._changed().set()
        await held.released.wait()

    def _changed(self) -> asyncio.Event:
        if self._held_changed is None:
            self._held_changed = asyncio.Event()
        return self._held_changed

    async def wait_held(self, timeout_s: float) -> list[dict[str, str]]:
        """The requests held now, waiting up to `timeout_s` for the first one."""
        loop_deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            with self._lock:
                waiting = [{"path": h.path, "when": h.when} for h in self._held]
            remaining = loop_deadline - asyncio.get_running_loop().time()
            if waiting or remaining <= 0:
                return waiting
            event = self._changed()
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue

    def release_all(self) -> int:
        with self._lock:
            held, self._held = self._held, []
            self._holds_left = 0
        for item in held:
            item.released.set()
        return len(held)
