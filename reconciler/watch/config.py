"""How a watcher is set up: its options, and the clock it reads.

The options come from `reconciler watch`'s command line (`reconciler.cli.watch`); the clock
is injected so that tests can move time without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reconciler.defaults import DEFAULT_MAX_PASSES
from reconciler.run.lock import DEFAULT_STATE_DIR, LockOptions

__all__ = ["Clock", "WatchConfig", "epoch_ms", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The watcher's default clock: the wall clock, in UTC."""
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as plans and the journal count time."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class WatchConfig:
    """How the watcher behaves; times in seconds."""

    self_heal: bool = False
    interval: float = 60.0
    debounce: float = 0.5  # orders and positions: coalesce a burst of events into one cycle
    market_debounce: float = 5.0  # market data ticks often; re-plan on it at most this often
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    parallelism: int | None = None  # None: the file's `apply.parallelism`, else 16
    max_passes: int = DEFAULT_MAX_PASSES
    state_dir: Path = DEFAULT_STATE_DIR
    visibility_timeout: float | None = None  # None: the file's `apply`, else 30 s
    lock: LockOptions = field(default_factory=LockOptions)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.debounce < 0 or self.market_debounce < 0:
            raise ValueError("debounce must not be negative")
