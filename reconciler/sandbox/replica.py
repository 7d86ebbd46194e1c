"""Read lag: private reads answered from a copy of the account as it was `read_lag_ms` ago.

Real venues serve reads from replicas that trail the matching engine, so a client that reads
right after a write may not see it. The sandbox shows the same, exactly and reproducibly:
after every committed write transaction (`Store.on_commit`) the whole database is copied
(`sqlite3.Connection.serialize`) and stamped with the time of the commit. A lagged read
takes the newest copy stamped at or before `now - read_lag_ms`, loads it (once per copy,
cached) into a query-only in-memory database and runs the ordinary read code against it
through an `Exchange` of its own. One read sees one copy, so everything it answers (orders,
positions, fills, wallet) is one consistent past state: new records missing, changed ones in
their old state, removed ones still there. Writes always act on the live database.

Copies closer together than `GRAIN_MS` are thinned: of two commits that close, the earlier
state is dropped once a later one arrives, so memory stays bounded under a flood of writes
(at most about `read_lag_ms / GRAIN_MS` copies). A read at time `T` therefore shows the
state of some moment in `[T - read_lag_ms - GRAIN_MS, T - read_lag_ms]`: never a write
younger than the lag, at most one grain older.

Turning lag on (or changing it) starts from the live state at that moment, stamped as older
than any window, so switching it on never hides what was already visible. Copies older than
the one the window needs are dropped at once, so memory holds only what the lag can still
show. Without lag no copy is taken: the cost is paid only while the knob is on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.sandbox.store import Store

if TYPE_CHECKING:
    import sqlite3

    from reconciler.sandbox.engine import Exchange

__all__ = ["GRAIN_MS", "Replica"]

GRAIN_MS = 25
_LONG_AGO = -(1 << 62)
_CACHED_READERS = 4


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True)
class _Copy:
    stamp: int
    number: int
    image: bytes


class Replica:
    """The timestamped copies of one exchange's database and the readers built from them.

    The stamps come from a monotonic clock, not the exchange's: a skewed or jumping server
    clock (a fault) must not make the replica run ahead of or behind the real lag.
    """

    def __init__(self, exchange: Exchange, clock: Callable[[], int] = monotonic_ms) -> None:
        self._exchange = exchange
        self._clock = clock
        self._lock = threading.Lock()
        self._lag_ms = 0
        self._copies: deque[_Copy] = deque()
        self._numbers = 0
        self._readers: dict[int, Exchange] = {}
        self.copies_taken = 0

    @property
    def lag_ms(self) -> int:
        return self._lag_ms

    def set_lag(self, lag_ms: int) -> None:
        """Start (or stop) lagging reads by `lag_ms`; a change starts from the live state."""
        store = self._exchange.store
        with store.lock:
            if lag_ms == self._lag_ms:
                return
            with self._lock:
                self._lag_ms = lag_ms
                self._copies.clear()
                self._readers.clear()
            if lag_ms <= 0:
                store.on_commit = None
                return
            self._capture(_LONG_AGO)
            store.on_commit = self._on_commit

    def _on_commit(self, connection: sqlite3.Connection) -> None:
        self._capture(self._clock())

    def _capture(self, stamp: int) -> None:
        image = self._exchange.store.image()
        with self._lock:
            self._numbers += 1
            self.copies_taken += 1
            copies = self._copies
            if len(copies) >= 2 and copies[-1].stamp - copies[-2].stamp < GRAIN_MS:
                thinned = copies.pop()  # its moment now shows the copy before it (older)
                self._readers.pop(thinned.number, None)
            copies.append(_Copy(stamp, self._numbers, image))
            self._prune(self._clock() - self._lag_ms)

    def _prune(self, cutoff: int) -> None:
        """Keep the newest copy at or before `cutoff` and every later one (lock held)."""
        while len(self._copies) >= 2 and self._copies[1].stamp <= cutoff:
            gone = self._copies.popleft()
            self._readers.pop(gone.number, None)

    def reader(self) -> Exchange | None:
        """An exchange over the state as it was `read_lag_ms` ago; None when reads are live."""
        if self._lag_ms <= 0:
            return None
        with self._lock:
            if self._lag_ms <= 0 or not self._copies:
                return None
            self._prune(self._clock() - self._lag_ms)
            chosen = self._copies[0]
            reader = self._readers.get(chosen.number)
            if reader is not None:
                return reader
        from reconciler.sandbox.engine import Exchange  # the engine builds on the store only

        live = self._exchange
        reader = Exchange(Store.read_only_copy(chosen.image), live.clock, live.config)
        reader.seeder = lambda _: None
        with self._lock:
            self._readers[chosen.number] = reader
            while len(self._readers) > _CACHED_READERS:
                del self._readers[min(self._readers)]
        return reader

    def held_bytes(self) -> int:
        """Memory the copies hold now (for the benchmark's report)."""
        with self._lock:
            return sum(len(copy.image) for copy in self._copies)
