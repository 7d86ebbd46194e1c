"""Seeded, reproducible misbehaviour, so the client's retry and reconcile paths can be proven.

A profile is set through `POST /_sandbox/faults` and applies until cleared (`{}`) or reset.
Every random draw comes from one `random.Random(seed)`, so a test that sends the same requests
in the same order sees the same faults.

Kinds, and where they strike:

- `fail_before` (probability): a private mutating request (`POST /api/v1/...`) is answered
  503 `INTERNAL_ERROR` before anything executes.
- `drop_after_commit` (probability): the request executes and commits, then the answer (success
  or refusal alike) is lost.
  Half of the drops (seeded) answer 502 `INTERNAL_ERROR`; the other half *cut* the connection:
  the server writes a 502 status line and headers announcing a body, then closes the socket
  without sending it, so an HTTP client reports a transport error (httpx:
  `RemoteProtocolError`). This is as close to "the connection died after the commit" as an
  ASGI application can get without reaching into the server's transport.
- `latency_ms` `[lo, hi]`: every `/api/v1` request waits a uniform draw first.
- `clock_skew_ms`: the server's clock runs this far ahead (negative: behind) of the wall clock;
  it drives signature windows, the `Date` header, envelope timestamps and rate-limit resets.
- `partial_fills`: the engine fills marketable orders only halfway (`partial_fill_ratio` 0.5).

New kinds add a field to `FaultProfile`, a parser entry in `_FIELDS` and a hook on
`FaultInjector` that the app calls at the right moment.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

__all__ = ["AfterCommit", "FaultInjector", "FaultProfile", "wall_clock_ms"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AfterCommit(enum.Enum):
    """What happens to the answer of a request that executed."""

    DELIVER = "deliver"
    BAD_GATEWAY = "bad_gateway"
    CUT = "cut"


@dataclass(frozen=True)
class FaultProfile:
    seed: int = 0
    fail_before: float = 0.0
    drop_after_commit: float = 0.0
    latency_ms: tuple[int, int] = (0, 0)
    clock_skew_ms: int = 0
    partial_fills: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The profile in the shape it is set with."""
        data = asdict(self)
        data.pop("extra")
        data["latency_ms"] = list(self.latency_ms)
        return data

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> FaultProfile:
        """Validate a `POST /_sandbox/faults` body; unknown keys are refused (typos hide)."""
        profile = cls()
        for name, value in body.items():
            parser = _FIELDS.get(name)
            if parser is None:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(_FIELDS))}")
            profile = replace(profile, **{name: parser(name, value)})
        return profile


def _probability(name: str, value: Any) -> float:
    number = _number(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must be a probability between 0 and 1")
    return float(number)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _latency(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{name} must be [low, high] in milliseconds")
    low, high = (_integer(name, item) for item in value)
    if not 0 <= low <= high <= 60_000:
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= 60000")
    return low, high


def _number(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ValueError(f"{name} must be a number")
    return Decimal(value)


_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "seed": _integer,
    "fail_before": _probability,
    "drop_after_commit": _probability,
    "latency_ms": _latency,
    "clock_skew_ms": _integer,
    "partial_fills": _boolean,
}


class FaultInjector:
    """Holds the active profile and its RNG; the app asks it at each decision point.

    `on_partial_fills` is called with the new flag whenever a profile is set, so the engine's
    trading config follows the profile without this module knowing the engine.
    """

    def __init__(
        self,
        on_partial_fills: Callable[[bool], None] = lambda _: None,
        wall_clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._on_partial_fills = on_partial_fills
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._profile = FaultProfile()
        self._rng = random.Random(0)

    @property
    def profile(self) -> FaultProfile:
        return self._profile

    def set(self, profile: FaultProfile) -> None:
        with self._lock:
            self._profile = profile
            self._rng = random.Random(profile.seed)
        self._on_partial_fills(profile.partial_fills)

    def clear(self) -> None:
        self.set(FaultProfile())

    def now_ms(self) -> int:
        """The server's clock: the wall clock plus the configured skew."""
        return self._wall_clock() + self._profile.clock_skew_ms

    def latency_s(self) -> float:
        low, high = self._profile.latency_ms
        if high == 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(low, high) / 1000

    def fail_before(self) -> bool:
        """Whether this mutating request is refused with a 5xx before it executes."""
        chance = self._profile.fail_before
        if chance <= 0:
            return False
        with self._lock:
            return self._rng.random() < chance

    def after_commit(self) -> AfterCommit:
        """Whether the answer of this executed mutating request is delivered, 502'd or cut."""
        chance = self._profile.drop_after_commit
        if chance <= 0:
            return AfterCommit.DELIVER
        with self._lock:
            if self._rng.random() >= chance:
                return AfterCommit.DELIVER
            return AfterCommit.CUT if self._rng.random() < 0.5 else AfterCommit.BAD_GATEWAY
