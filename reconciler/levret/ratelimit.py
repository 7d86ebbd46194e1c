"""Spend the request budget the exchange reports, keeping a reserve for the key's other clients.

The exchange counts requests per key in a rolling window and says, on every private answer,
how many are left (`X-RateLimit-Remaining`) and when the oldest counted one leaves the window
(`X-RateLimit-Reset`, epoch seconds on its clock). A client that paces itself at a fixed
fraction of the budget waits for nothing while the window has room, and still collides with
other clients of the same key, whose requests it cannot see. So this client spends what the
exchange says is left and paces only at the reserve line:

- **What is left.** The latest answer says how many were left when the exchange counted that
  request, at some moment between its send and its answer. Answers come back out of order, so
  every other request of this client that was out when it left, or left after it, is taken as
  not yet in that count: an over-count only makes the client wait sooner, an under-count would
  send a request the exchange refuses. This client's own requests that have left the window
  since that answer are given back (a window after each one's answer: never early); other
  clients' departures are learnt from the next answer.
- **The reserve** (`reserve`, 10 % by default) is never spent, so another client of the key,
  or this client's next run, still has room. At the line the client waits until one of its own
  requests leaves the window, or until `X-RateLimit-Reset`, and then sends one request whose
  answer tells it how much opened.
- **Others of the key.** Their requests show only in the next answers, so the client never has
  more requests out than it leaves unspent: one that spends as fast finds room meanwhile.
- **Before the first answer** it knows nothing, so it sends a small burst and waits for answers.
  Until an answer carries the headers (the documentation promises them on order routes), it
  counts its own requests in the window against the documented limit less the reserve.
- **Refusals.** An answer with nothing left, or a 429's `Retry-After`, holds every request of
  this client until the time it names. The client never sends a request it expects to be refused.
- **Waking.** A sender held back by the first burst goes as soon as the first request ends
  (its answer tells the window); one at the reserve line looks again when a known departure
  or the reset is due, or shortly while an answer is out. (Waking at every answer there would
  send each request as soon as another's answer came, while the rest are out: every answer
  would then be discounted for requests out, and the client would spend half its window.)

Public market reads carry no key and are not counted against it; they do not pass through here.
The clock and `sleep` are injectable, so tests check the pacing against a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from reconciler.levret.signing import ServerClock

__all__ = [
    "DEFAULT_RESERVE",
    "FIRST_BURST",
    "RateBudget",
    "Sleep",
    "Ticket",
    "backoff_delay",
    "parse_retry_after",
]

log = logging.getLogger("reconciler.levret")

Sleep = Callable[[float], Awaitable[None]]

# Lower case: the names as HTTP compares them, and the keys of the headers `observe` reads.
HEADER_LIMIT = "x-ratelimit-limit"
HEADER_REMAINING = "x-ratelimit-remaining"
HEADER_RESET = "x-ratelimit-reset"
HEADER_RETRY_AFTER = "retry-after"

DEFAULT_RESERVE = 0.10
# Requests in flight before the exchange has said anything about the window: enough for an
# account read of a hundred symbols at once (positions and a dozen pages of open orders),
# a seventy-fifth of the documented 1,200 a minute and well inside the reserve.
FIRST_BURST = 16
# How often a waiting sender looks again: an answer may have opened the window meanwhile.
_RECHECK_S = 0.02


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


@dataclass(frozen=True)
class Ticket:
    """One counted request: its place in this client's sequence, and how many were out then."""

    sequence: int
    out_before: int  # this client's requests still unanswered when it left
    sent_ms: int  # local clock


@dataclass
class _Answer:
    """The latest word of the exchange on the window, less what was still out when it came."""

    sequence: int  # requests this client had sent when it came
    remaining: int
    received_ms: int  # local clock
    reset_ms: int | None  # server clock: when the oldest counted request leaves the window


class RateBudget:
    """Take a `Ticket` from `acquire()` before each keyed request; pass its answer to `observe()`.

    `limit` and `window_seconds` are the documented budget, used until the exchange's headers
    say otherwise (`X-RateLimit-Limit`); `reserve` is the fraction of the limit left unspent.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        clock: ServerClock,
        reserve: float = DEFAULT_RESERVE,
        first_burst: int = FIRST_BURST,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or window_seconds <= 0 or not 0 <= reserve < 1 or first_burst < 1:
            raise ValueError("a positive limit and window, a reserve in [0, 1), a burst >= 1")
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self.reserve = reserve
        self.first_burst = first_burst
        self.refusals = 0  # 429s seen, for the apply report
        self.waits = 0  # times a request waited at the reserve line
        self._clock = clock
        self._sleep = sleep
        self._sequence = 0
        self._in_flight = 0
        # (sent, ended) in local ms of this client's counted requests, in the order they ended
        self._done: deque[tuple[int, int]] = deque()
        self._answer: _Answer | None = None
        self._probe_for: tuple[int, int] | None = None  # (answer sequence, reset) probed once
        self._blocked_until_ms = 0  # server clock
        # Set when the first request ends: the senders held back by the first burst go.
        self._first_done = asyncio.Event()

    # -- the budget ----------------------------------------------------------------------------

    @property
    def reserve_requests(self) -> int:
        """Requests of the window this client leaves to others."""
        return math.ceil(self.limit * self.reserve)

    def _room(self) -> tuple[int, bool]:
        """(requests left above the reserve, whether one probe may go though none is left)."""
        answer = self._answer
        now = self._clock.local_ms()
        self._forget(now)
        if answer is None:
            # No answer has said anything of the window (the documentation promises the
            # headers on order routes only): count this client's own requests against the
            # documented limit, and before any answer at all send only the first burst.
            recent = sum(1 for _, ended in self._done if ended > now - self.window_ms)
            left = self.limit - self.reserve_requests - recent - self._in_flight
            if not self._done:
                left = min(left, self.first_burst - self._in_flight)
            return left, False
        given_back = self._given_back(answer, now)
        counted_since = self._sequence - answer.sequence  # sent after the answered one
        left = answer.remaining + given_back - counted_since - self.reserve_requests
        # Keep as much unspent as is out: another client of the key that spends as fast as
        # this one then still finds room before the answers tell this one to slow down.
        return left - self._in_flight, left <= 0 and not given_back and self._probe_due(answer)

    def _given_back(self, answer: _Answer, now_ms: int) -> int:
        """Own requests that left the window after the exchange counted `answer`'s request.

        One sent more than a window before the answer may have left before it was counted,
        so it is not given back again; one is given back a window after it ended, never early.
        """
        since, until = answer.received_ms - self.window_ms, now_ms - self.window_ms
        given_back = 0
        # `_done` is in the order the requests ended: only its head has ended by `until`,
        # so the look stops there instead of walking the whole window on every request.
        # (Were the local clock stepped back, a later entry might have ended earlier: it
        # is then given back later than it could be, never early.)
        for sent, ended in self._done:
            if ended > until:
                break
            if sent > since:
                given_back += 1
        return given_back

    async def hold(self) -> None:
        """Wait out a hold (a 429, an exhausted window); for requests the key does not count."""
        while (blocked_ms := self._blocked_until_ms - self._clock.now_ms()) > 0:
            log.debug("rate limit: holding every request %.3fs", blocked_ms / 1000)
            await self._sleep(blocked_ms / 1000)

    async def acquire(self) -> Ticket:
        """Wait until a request fits in the window above the reserve; count it as sent."""
        waited = False
        while True:
            if self._blocked_until_ms > self._clock.now_ms():
                waited = True
                await self.hold()
                continue
            left, probe = self._room()
            if left > 0 or probe:
                break
            if not waited and self._answer is not None:
                log.debug("rate limit: at the reserve line, waiting for the window to open")
                self.waits += 1
                waited = True
            await self._wait(self._wait_s())
        if probe and self._answer is not None:
            self._probe_for = (self._answer.sequence, self._answer.reset_ms or 0)
        ticket = Ticket(self._sequence + 1, self._in_flight, self._clock.local_ms())
        self._sequence += 1
        self._in_flight += 1
        return ticket

    def observe(self, ticket: Ticket, headers: Mapping[str, str]) -> None:
        """Learn from the answer to `ticket`'s request (any status, 429 included); `headers`
        are its headers by lower-case name (an `httpx.Headers` will do)."""
        limit = _integer(headers.get(HEADER_LIMIT))
        remaining = _integer(headers.get(HEADER_REMAINING))
        reset = headers.get(HEADER_RESET)
        reset_ms: int | None = None
        if reset is not None:
            try:
                reset_ms = int(float(reset) * 1000)
            except ValueError:
                reset_ms = None
        if limit is not None and limit > 0:
            self.limit = limit
        if remaining is None:
            return
        # The exchange counted this request at some moment between its send and its answer;
        # any request that was out when it left, or left after it, may be counted after that
        # moment: take them all as not yet in this count.
        uncounted = ticket.out_before + self._sequence - ticket.sequence
        self._answer = _Answer(
            self._sequence, remaining - uncounted, self._clock.local_ms(), reset_ms
        )
        if remaining <= 0 and reset_ms is not None:
            self._block_until(reset_ms)

    def done(self, ticket: Ticket) -> None:
        """The request of `ticket` is over, answered or not; it leaves the window from now on.

        The exchange counted it before now, so it leaves the window no later than a window
        after now: giving it back then is never early.
        """
        self._in_flight -= 1
        self._done.append((ticket.sent_ms, self._clock.local_ms()))
        self._first_done.set()

    def refused(self, retry_after_s: float) -> None:
        """A 429: hold every request of this client for `retry_after_s`."""
        self.refusals += 1
        self._block_until(self._clock.now_ms() + int(retry_after_s * 1000))

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`; held back by the first burst, only until the first request ends."""
        if self._first_done.is_set():
            await self._sleep(seconds)
            return
        ended = asyncio.ensure_future(self._first_done.wait())
        slept = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait((ended, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (ended, slept):
                waiter.cancel()

    def _probe_due(self, answer: _Answer) -> bool:
        """Past the reset the exchange named, one request may go to learn what opened."""
        if answer.reset_ms is None:
            due = self._clock.local_ms() >= answer.received_ms + self.window_ms
        else:
            due = self._clock.now_ms() >= answer.reset_ms
        return due and self._probe_for != (answer.sequence, answer.reset_ms or 0)

    def _wait_s(self) -> float:
        """Until the next moment the window may have room: a recheck, or a known departure."""
        if self._answer is None and not self._done:
            return _RECHECK_S
        now = self._clock.local_ms()
        horizon = now - self.window_ms  # own requests still counted leave after now
        own = min((ended for _, ended in self._done if ended > horizon), default=None)
        own = None if own is None else own + self.window_ms
        candidates = [own - now] if own is not None else []
        reset_ms = self._answer.reset_ms if self._answer is not None else None
        if reset_ms is not None and reset_ms > self._clock.now_ms():
            candidates.append(reset_ms - self._clock.now_ms())
        soonest = min(candidates, default=self.window_ms) / 1000
        # An answer in flight may open the window sooner; look again shortly while one is out.
        if self._in_flight:
            soonest = min(soonest, _RECHECK_S)
        return max(soonest, _RECHECK_S / 4)

    def _forget(self, now_ms: int) -> None:
        """Drop own requests older than the window before the freshest answer."""
        horizon = now_ms - 2 * self.window_ms
        while self._done and self._done[0][1] <= horizon:
            self._done.popleft()

    def _block_until(self, until_ms: int) -> None:
        self._blocked_until_ms = max(self._blocked_until_ms, until_ms)


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
