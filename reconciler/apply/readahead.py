"""Position reads sent one round trip early, for the calls that start the next phase.

A market order and a margin move read their symbol's position just before they are sent
(`Calls.baseline`: a position that moved since the plan stops the call). When such a call
opens its symbol's part of a phase, that read is a round trip on the phase's critical path
that no call of the current phase depends on. So once every symbol of the current phase is
on its last call, the engine (`_PhaseEnd`) sends those reads for the next phase's first
slots: at once for a symbol the current phase does not touch, after its own chain has ended
for one it does. The answer is back about when the phase ends. The symbols that go at once
(every one the current phase does not touch) share one read of all positions (`read_many`)
instead of one read each: at a phase's end that was a dozen requests at the same moment, on
the critical path.

What makes it as safe as reading at the call:
- this apply writes to a symbol only through its chain, one call at a time, and a symbol is
  read ahead only once its chain of the current phase (if it has one) has ended, so no write
  of ours lands between the read and the call it serves;
- the read waits, as any fresh read does, until it shows this run's accepted writes on the
  symbol (`VisibilityTracker.fresh_position`);
- a read older than `MAX_AGE_S` when its call comes (a slow phase end, a settlement) is
  dropped and made again, so an outside change has at most that long plus one round trip
  to slip in, against one round trip without read-ahead; a failed read is made again too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import anyio

from reconciler.model.account import Position

__all__ = ["MAX_AGE_S", "PositionReadAhead"]

log = logging.getLogger("reconciler.apply")

# How old (from when it was sent) a read ahead may be when its call takes it.
MAX_AGE_S = 0.25

ReadPosition = Callable[[str], Awaitable[Position | None]]
# The positions of several symbols from one read; a symbol left out was not fit to use.
ReadPositions = Callable[[list[str]], Awaitable[Mapping[str, Position | None]]]


@dataclass
class _Read:
    sent_at: float
    done: anyio.Event = field(default_factory=anyio.Event)
    position: Position | None = None
    read: bool = False  # stays False if the read failed or was cancelled


class PositionReadAhead:
    """Reads sent early (`read`), each taken at most once by the call it was for (`take`)."""

    def __init__(
        self,
        read_position: ReadPosition,
        read_positions: ReadPositions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_position = read_position
        self._read_positions = read_positions
        self._clock = clock
        self._reads: dict[str, _Read] = {}

    def forget(self, symbols: Iterable[str]) -> None:
        """Drop the reads of `symbols` nobody took: the phase they were for has ended (its
        call was held back), and a later call of the symbol must read for itself."""
        for symbol in symbols:
            self._reads.pop(symbol, None)

    async def read(self, symbol: str) -> None:
        """Read `symbol`'s position now and keep it for its call; run it as a task."""
        slot = self._reads[symbol] = _Read(sent_at=self._clock())
        try:
            slot.position = await self._read_position(symbol)
            slot.read = True
        except Exception as exc:  # the call reads again itself, and reports what it meets
            log.debug("reading the %s position ahead failed: %s", symbol, exc)
        finally:
            slot.done.set()

    async def read_many(self, symbols: list[str]) -> None:
        """Read the positions of `symbols` now in one request and keep each for its call;
        one symbol alone (or no shared reader) is read as `read` does. Run it as a task."""
        if len(symbols) == 1 or self._read_positions is None:
            for symbol in symbols:
                await self.read(symbol)
            return
        sent_at = self._clock()
        slots = {symbol: _Read(sent_at=sent_at) for symbol in symbols}
        self._reads.update(slots)
        try:
            shown = await self._read_positions(symbols)
            for symbol, slot in slots.items():
                if symbol in shown:  # else its call reads for itself, and waits for it
                    slot.position, slot.read = shown[symbol], True
        except Exception as exc:  # each call reads again itself, and reports what it meets
            log.debug("reading %d positions ahead failed: %s", len(symbols), exc)
        finally:
            for slot in slots.values():
                slot.done.set()

    async def take(self, symbol: str) -> tuple[bool, Position | None]:
        """`(True, position)` when a read ahead of `symbol` is fit to use, else `(False, None)`.

        A read still in flight is waited for: it was sent before the caller would have sent
        its own."""
        slot = self._reads.pop(symbol, None)
        if slot is None:
            return False, None
        await slot.done.wait()
        if not slot.read or self._clock() - slot.sent_at > MAX_AGE_S:
            return False, None
        return True, slot.position
