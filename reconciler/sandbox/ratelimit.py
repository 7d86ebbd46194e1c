"""The per-key request budget, as a rolling window like the exchange's (`docs/levret-api.md`).

Every request that names a key counts, refused ones included (401 and 429 too), because the
exchange counts them and a client that hammers on a bad signature must learn to back off.
The limiter is pure bookkeeping over a clock in milliseconds; the app turns a `Decision` into
headers and, when refused, a 429.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMIT", "DEFAULT_WINDOW_S", "Decision", "RateLimiter"]

DEFAULT_LIMIT = 1200
DEFAULT_WINDOW_S = 60.0


@dataclass(frozen=True)
class Decision:
    """The verdict on one request and the numbers the response headers carry."""

    allowed: bool
    limit: int
    remaining: int
    reset_epoch_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """`X-RateLimit-*` on every private response; `Retry-After` only when refused."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch_s),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class RateLimiter:
    """`limit` requests per rolling `window_s` seconds per key; reconfigurable at run time."""

    def __init__(
        self,
        clock: Callable[[], int],
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[int]] = {}
        self.configure(limit, window_s)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window_s(self) -> float:
        return self._window_ms / 1000

    def configure(self, limit: int, window_s: float) -> None:
        """Change the budget; windows already counted stay counted."""
        if limit < 1 or not window_s > 0:
            raise ValueError("the limit and the window must be positive")
        with self._lock:
            self._limit = limit
            self._window_ms = max(1, round(window_s * 1000))

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def hit(self, key: str) -> Decision:
        """Count one request for `key` and decide whether it may proceed."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            horizon = now - self._window_ms
            while hits and hits[0] <= horizon:
                hits.popleft()
            allowed = len(hits) < self._limit
            hits.append(now)
            count = len(hits)
            reset = math.ceil((hits[0] + self._window_ms) / 1000)
            retry_after = 0
            if not allowed:
                # The request that frees a slot: once it leaves, count drops below the limit.
                freeing = hits[count - self._limit]
                retry_after = max(1, math.ceil((freeing + self._window_ms - now) / 1000))
            self._forget_idle(horizon)
            return Decision(
                allowed=allowed,
                limit=self._limit,
                remaining=max(0, self._limit - count),
                reset_epoch_s=reset,
                retry_after_s=retry_after,
            )

    def _forget_idle(self, horizon: int) -> None:
        """Drop keys whose whole window has passed, so many one-off keys cost no memory."""
        if len(self._hits) < 1024:
            return
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]
