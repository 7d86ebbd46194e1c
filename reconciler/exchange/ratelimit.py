"""Client-side pacing plus the server's own rate-limit signals.

Two layers, because each one alone is not enough:

1. A leaky bucket (`aiolimiter.AsyncLimiter`) paces this client below its budget. A leaky
   bucket of capacity `c` draining at `r` can pass `c + r*T` requests in a rolling window of
   `T` seconds, so the capacity is a fortieth of the budget and the drain rate the rest: the
   client never exceeds `budget * headroom` in any window the exchange measures, a small
   burst (a snapshot's first reads) starts without waiting, and a long run is paced at
   nearly the whole budget (at 1140 per 60 s: a burst of 28, then 18.5 per s; a tenth would
   leave only 17.1 per s once the burst is spent).
2. The exchange's headers: when `X-RateLimit-Remaining` reaches 0 every request waits until
   `X-RateLimit-Reset` (epoch seconds, read on the server clock); a 429's `Retry-After` blocks
   all requests of this client for that long. These cover other clients of the same key.

`sleep` is injectable so tests can check the waits without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from aiolimiter import AsyncLimiter

from reconciler.exchange.signing import ServerClock

__all__ = ["RateLimiter", "Sleep", "backoff_delay", "parse_retry_after"]

log = logging.getLogger("reconciler.exchange")

Sleep = Callable[[float], Awaitable[None]]

HEADER_REMAINING = "X-RateLimit-Remaining"
HEADER_RESET = "X-RateLimit-Reset"
HEADER_RETRY_AFTER = "Retry-After"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (the exchange sends whole seconds)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped at `maximum`."""
    base = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    draw = (rng or random).random()
    return base / 2 + draw * base / 2


class RateLimiter:
    """Gate every send through `acquire()`; feed every response to `observe()`."""

    def __init__(
        self,
        budget: int,
        window_seconds: float,
        *,
        clock: ServerClock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        burst = max(1, budget // 40)
        drain_per_window = budget - burst
        if drain_per_window <= 0:
            # A budget of one: drain half a request per window so two never share one.
            period = 2 * window_seconds
        else:
            period = burst * window_seconds / drain_per_window
        self.budget = budget
        self.window_seconds = window_seconds
        self._bucket = AsyncLimiter(burst, period)
        self._clock = clock
        self._sleep = sleep
        self._blocked_until_ms = 0

    @property
    def blocked_until_ms(self) -> int:
        """Server-clock epoch ms before which no request is sent (0: not blocked)."""
        return self._blocked_until_ms

    async def acquire(self) -> None:
        """Wait for the server's window (if exhausted) and then for the local bucket."""
        while True:
            wait_ms = self._blocked_until_ms - self._clock.now_ms()
            if wait_ms <= 0:
                break
            log.debug("rate limit: waiting %.3fs for the exchange's window", wait_ms / 1000)
            await self._sleep(wait_ms / 1000)
        await self._bucket.acquire()

    def block_for(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` (a 429's `Retry-After`)."""
        self._block_until(self._clock.now_ms() + int(seconds * 1000))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read `X-RateLimit-Remaining` / `-Reset`; an exhausted window blocks until reset."""
        remaining = headers.get(HEADER_REMAINING)
        reset = headers.get(HEADER_RESET)
        if remaining is None or reset is None:
            return
        try:
            left = int(remaining)
            reset_ms = int(float(reset) * 1000)
        except ValueError:
            return
        if left <= 0:
            self._block_until(reset_ms)

    def _block_until(self, until_ms: int) -> None:
        self._blocked_until_ms = max(self._blocked_until_ms, until_ms)
