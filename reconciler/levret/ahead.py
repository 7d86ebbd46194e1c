"""Public market reads started before anyone asks for them, each taken at most once.

Apply's first read of the account learns which symbols need a mark only once the positions
and open orders are in: one round trip after them. The plan it applies was made
from a read that needed the same, so the client can start those market reads at once, beside
the account's (`LevretClient.read_market_ahead`); the reader's own call then takes the answer
instead of sending again.

What keeps it honest:
- only public market data (a mark) is read this way: nothing the exchange counts
  against the key, and nothing the money-safety checks take on trust from the plan;
- a read older than `MAX_AGE_S` (from its send) when its reader comes is dropped and made
  again, so a mark is never staler than that plus one round trip against one round trip;
- a read that failed is made again by its reader, who meets the failure as its own;
- a read nobody takes is cancelled when the client closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, TypeVar

__all__ = ["MAX_AGE_S", "ReadsAhead"]

# How old (from when it was sent) a read started ahead may be when its reader takes it: the
# account read it is sent beside takes a few round trips (its pages, a burst held back until
# the first answer), and a mark a second old is as good as one a round trip old to a plan
# made from a read seconds or minutes older.
MAX_AGE_S = 1.0

T = TypeVar("T")


class ReadsAhead:
    """Reads started early (`start`), each taken once by the caller it was for (`take`)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reads: dict[Hashable, tuple[float, asyncio.Task[Any]]] = {}

    def start(self, key: Hashable, read: Coroutine[Any, Any, Any]) -> None:
        """Send `read` now, kept under `key` for its reader; a key already waiting is kept."""
        if key in self._reads:
            read.close()
            return
        task = asyncio.ensure_future(read)
        task.add_done_callback(_retrieve)
        self._reads[key] = (self._clock(), task)

    async def take(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The answer started under `key` if it is fit to use, else `read()` now."""
        entry = self._reads.pop(key, None)
        if entry is not None:
            sent_at, task = entry
            if self._clock() - sent_at <= MAX_AGE_S:
                try:
                    await asyncio.wait((task,))  # a cancellation of the taker still reaches it
                except asyncio.CancelledError:
                    task.cancel()  # taken off the list: nobody else would cancel it
                    raise
                if not task.cancelled() and task.exception() is None:
                    answer: T = task.result()
                    return answer
                # failed or cancelled: read again, and meet the failure as one's own
            else:
                task.cancel()
        return await read()

    def close(self) -> None:
        """Cancel the reads nobody took."""
        for _sent_at, task in self._reads.values():
            task.cancel()
        self._reads.clear()

    def __len__(self) -> int:
        return len(self._reads)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Look at a finished read's failure, so one nobody takes is not reported as unretrieved."""
    if not task.cancelled():
        task.exception()
