"""The client spends the budget the exchange reports, on a fake clock and a mock exchange.

The mock exchange keeps a rolling window per key exactly as the documentation describes
(`X-RateLimit-Limit`, `-Remaining`, `-Reset` on every keyed answer, 429 with `Retry-After`
beyond the limit, refused requests counted too). Time is fake: `sleep` advances the clock, so
the pacing is checked to the millisecond without waiting. "Another client" is the same window
charged by the test between requests.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from typing import Any

import httpx
import pytest

from reconciler.levret.client import LevretClient
from reconciler.levret.errors import RateLimited
from reconciler.levret.ratelimit import FIRST_BURST, RateBudget, _Answer
from reconciler.levret.settings import ClientSettings
from reconciler.levret.transport import _kept_headers

START = 1_750_000_000.0
LATENCY_S = 0.03  # of each answer, on the fake clock
IDLE_YIELDS = 20
OVERVIEW: list[Any] = []  # no positions: the smallest keyed answer


class FakeTime:
    """Virtual time: a sleeper wakes when every task is idle and its moment is the earliest."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0
        self._ticker: asyncio.Task[None] | None = None

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), self._order, future))
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())
        await future

    async def _tick(self) -> None:
        while self._sleepers:
            for _ in range(IDLE_YIELDS):  # let every runnable task run to its next wait
                await asyncio.sleep(0)
            wake, _, future = heapq.heappop(self._sleepers)
            if future.done():  # a sleep cancelled (its sender woke sooner) moves no time
                continue
            self.now = max(self.now, wake)
            future.set_result(None)


class WindowedExchange:
    """A rolling window of `limit` keyed requests per `window_s`, on the fake clock."""

    def __init__(
        self,
        time: FakeTime,
        limit: int,
        window_s: float = 60.0,
        others_per_request: int = 0,
        headers: bool = True,
    ) -> None:
        self.time = time
        self.send_headers = headers  # False: the window is enforced but never reported
        self.others_per_request = others_per_request  # another client's requests beside each
        self.limit = limit
        self.window_ms = int(window_s * 1000)
        self.hits: deque[int] = deque()
        self.ours: list[int] = []  # ms of each keyed request of the client under test
        self.refused = 0
        self.public = 0

    def now_ms(self) -> int:
        return int(self.time.now * 1000)

    def charge(self, count: int) -> None:
        """Another client of the same key spends `count` requests now."""
        for _ in range(count):
            self._hit()

    def _hit(self) -> tuple[bool, dict[str, str]]:
        now = self.now_ms()
        while self.hits and self.hits[0] <= now - self.window_ms:
            self.hits.popleft()
        allowed = len(self.hits) < self.limit
        self.hits.append(now)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - len(self.hits))),
            "X-RateLimit-Reset": str(math.ceil((self.hits[0] + self.window_ms) / 1000)),
        }
        if not allowed:
            freeing = self.hits[len(self.hits) - self.limit]
            headers["Retry-After"] = str(max(1, math.ceil((freeing + self.window_ms - now) / 1000)))
        return allowed, headers

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # answers interleave like a real server's
        await self.time.sleep(LATENCY_S)
        if "X-API-KEY-ID" not in request.headers:
            self.public += 1
            return httpx.Response(200, json={"success": True, "data": []})
        self.ours.append(self.now_ms())
        self.charge(self.others_per_request)
        allowed, headers = self._hit()
        if not allowed:
            self.refused += 1
            body = {"success": False, "error": {"code": "RATE_LIMITED", "message": "slow down"}}
            return httpx.Response(429, json=body, headers=headers)
        return httpx.Response(
            200,
            json={"success": True, "data": OVERVIEW},
            headers=headers if self.send_headers else None,
        )

    def busiest_window(self) -> int:
        """The most requests of the client under test in any rolling window."""
        most, start = 0, 0
        for end, at in enumerate(self.ours):
            while self.ours[start] <= at - self.window_ms:
                start += 1
            most = max(most, end - start + 1)
        return most


def client(
    exchange: WindowedExchange, time: FakeTime, *, reserve: float = 0.10, limit: int = 1200
) -> LevretClient:
    settings = ClientSettings(
        api_key_id="k1",
        api_key_secret="unit-secret",
        user_id="u1",
        rate_limit_per_minute=limit,
        rate_reserve=reserve,
        backoff_initial=0.01,
        backoff_max=0.05,
    )
    return LevretClient(
        settings, transport=httpx.MockTransport(exchange), sleep=time.sleep, wall=time.wall
    )


async def reads(c: LevretClient, count: int) -> list[Any]:
    return await asyncio.gather(*(c.positions() for _ in range(count)))


@pytest.mark.anyio
async def test_a_run_that_fits_the_window_is_sent_without_waiting() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=1200)
    async with client(exchange, time) as c:
        await reads(c, 300)
    assert exchange.refused == 0
    # 8 answers' round trip to learn the window, then the rest at once: no pacing.
    assert time.now - START < 0.5
    assert c.budget.waits == 0


@pytest.mark.anyio
async def test_before_the_first_answer_only_a_small_burst_goes_out() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=1200)
    arrived = 0
    release = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        await release.wait()
        return await exchange(request)

    async def first_answers_after_everyone_queued() -> None:
        for _ in range(IDLE_YIELDS * 5):
            await asyncio.sleep(0)
        assert arrived == FIRST_BURST  # the rest wait for an answer to learn the window
        release.set()

    settings = ClientSettings(api_key_id="k1", api_key_secret="s", user_id="u1")
    async with LevretClient(
        settings, transport=httpx.MockTransport(held), sleep=time.sleep, wall=time.wall
    ) as c:
        await asyncio.gather(reads(c, 40), first_answers_after_everyone_queued())
    assert arrived == 40 and exchange.refused == 0


@pytest.mark.anyio
async def test_the_senders_held_back_by_the_first_burst_go_when_its_first_answer_comes() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=1200)
    async with client(exchange, time) as c:
        await reads(c, 20)
    arrivals = [round(ms / 1000 - START, 3) for ms in exchange.ours]
    # The burst arrives after one latency; the rest leave the moment its answers come back
    # (not at the next look of a timer) and arrive one latency after that.
    assert arrivals == [LATENCY_S] * FIRST_BURST + [2 * LATENCY_S] * (20 - FIRST_BURST)
    assert exchange.refused == 0


@pytest.mark.anyio
@pytest.mark.parametrize("reserve", [0.0, 0.10, 0.25])
async def test_it_paces_at_the_reserve_line_and_never_exceeds_the_window(reserve: float) -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=100)
    async with client(exchange, time, reserve=reserve, limit=100) as c:
        await reads(c, 350)
    assert exchange.refused == 0
    assert exchange.busiest_window() <= 100 - math.ceil(100 * reserve)
    # 350 requests at (100 - reserve) a window take at least three windows more...
    spendable = 100 - math.ceil(100 * reserve)
    assert time.now - START >= 60 * (math.ceil(350 / spendable) - 1)
    # ...and not much more: it paces at the line, it does not trickle.
    assert time.now - START <= 60 * math.ceil(350 / spendable) + 5
    assert c.budget.waits >= 1


@pytest.mark.anyio
async def test_another_client_of_the_key_slows_it_and_it_is_never_refused() -> None:
    time = FakeTime()
    alone = WindowedExchange(time, limit=100)
    async with client(alone, time, limit=100) as c:
        await reads(c, 120)
    alone_s = time.now - START

    time = FakeTime()
    shared = WindowedExchange(time, limit=100, others_per_request=1)  # it spends as we do
    async with client(shared, time, limit=100) as c:
        await reads(c, 120)
    shared_s = time.now - START
    assert shared.refused == 0
    assert shared_s > 1.5 * alone_s  # half the window is the other's: about twice as long
    # Together the two never spent into our reserve... beyond the other's own requests.
    assert shared.busiest_window() <= 100 - 10


@pytest.mark.anyio
async def test_a_429_holds_every_sender_for_retry_after_then_the_call_is_resent() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=100)
    async with client(exchange, time, reserve=0.0, limit=100) as c:
        await reads(c, 1)
        exchange.charge(99)  # another client took the rest, all at once
        sent_before = len(exchange.ours)
        results = await reads(c, 3)
    assert len(results) == 3
    # The three were out before the first refusal came back; after it, nothing was sent
    # until the Retry-After had passed, and then each call was sent once more.
    assert exchange.refused == 3 and c.budget.refusals == 3
    first_tries, retries = exchange.ours[sent_before:][:3], exchange.ours[sent_before:][3:]
    assert len(retries) == 3
    assert min(retries) - max(first_tries) >= 59_000


@pytest.mark.anyio
async def test_a_429_without_headers_holds_for_its_retry_after() -> None:
    time = FakeTime()
    answers = [
        httpx.Response(
            429,
            json={"success": False, "error": {"code": "RATE_LIMITED", "message": "no"}},
            headers={"Retry-After": "3"},
        ),
        httpx.Response(200, json={"success": True, "data": OVERVIEW}),
    ]
    async with LevretClient(
        ClientSettings(api_key_id="k1", api_key_secret="s", user_id="u1"),
        transport=httpx.MockTransport(lambda request: answers.pop(0)),
        sleep=time.sleep,
        wall=time.wall,
    ) as c:
        await c.positions()
        assert c.budget.refusals == 1
    assert time.now - START >= 3


@pytest.mark.anyio
async def test_refusals_beyond_the_attempts_surface_as_rate_limited() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=100)
    async with client(exchange, time, reserve=0.0, limit=100) as c:
        await reads(c, 1)

        async def keep_it_full() -> None:
            while True:
                exchange.charge(100)
                await asyncio.sleep(0)

        filler = asyncio.ensure_future(keep_it_full())
        try:
            with pytest.raises(RateLimited):
                await c.positions()
        finally:
            filler.cancel()
    assert exchange.refused == c.settings.max_attempts


@pytest.mark.anyio
async def test_public_reads_do_not_spend_the_keys_budget() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=100)
    async with client(exchange, time, limit=100) as c:
        await asyncio.gather(*(c.supported_symbols() for _ in range(50)))
    assert exchange.public == 50 and not exchange.hits


@pytest.mark.anyio
async def test_without_the_headers_it_keeps_to_the_documented_limit_by_its_own_count() -> None:
    time = FakeTime()
    exchange = WindowedExchange(time, limit=100, headers=False)
    async with client(exchange, time, limit=100) as c:
        await reads(c, 250)
    assert exchange.refused == 0
    assert exchange.busiest_window() <= 90
    assert time.now - START >= 120  # 250 at 90 a window: two windows of waiting


# -- the given-back count and the headers it learns from --------------------------------------


class _Clock:
    """A server clock whose local time the test sets."""

    def __init__(self) -> None:
        self.ms = 0

    def local_ms(self) -> int:
        return self.ms

    def now_ms(self) -> int:
        return self.ms


def _budget_with_done(ends: list[tuple[int, int]], window_s: float = 1.0) -> RateBudget:
    clock = _Clock()
    budget = RateBudget(100, window_s, clock=clock, reserve=0.0)  # type: ignore[arg-type]
    for sent, ended in ends:
        clock.ms = sent
        ticket = asyncio.run(budget.acquire())
        clock.ms = ended
        budget.done(ticket)
    return budget


def test_only_requests_a_window_past_their_end_and_sent_after_the_count_are_given_back() -> None:
    # Ended at 100..900 ms, one sent before the answer's window: the window is 1 s.
    budget = _budget_with_done([(50, 100), (200, 300), (400, 500), (700, 900)])
    answer = _Answer(sequence=4, remaining=10, received_ms=1_100, reset_ms=None)
    # At 1 450 ms, those that ended by 450 ms: the one sent at 50 ms is before the answer's
    # window (100 ms) and may have left before it was counted, so only the second counts.
    assert budget._given_back(answer, 1_450) == 1
    assert budget._given_back(answer, 1_900) == 3
    assert budget._given_back(answer, 1_099) == 0


def test_a_clock_stepped_back_gives_back_late_never_early() -> None:
    # The third request "ended" before the second (the local clock was stepped back).
    budget = _budget_with_done([(200, 300), (600, 800), (650, 400)])
    answer = _Answer(sequence=3, remaining=10, received_ms=900, reset_ms=None)
    # By 1 450 ms (ended by 450), a full scan would give back 2; the scan stops at the
    # entry that ended at 800, so the stepped-back one waits: fewer, never more.
    assert budget._given_back(answer, 1_450) == 1
    assert budget._given_back(answer, 1_800) == 3


def test_the_client_reads_each_header_it_needs_once_in_any_letter_case() -> None:
    headers = httpx.Headers(
        [
            ("X-RateLimit-Remaining", "7"),
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("RETRY-AFTER", "1"),
            ("Retry-After", "2"),
            ("Set-Cookie", "nobody=reads"),
        ]
    )
    assert _kept_headers(headers) == {
        "x-ratelimit-remaining": "7",
        "date": "Thu, 01 Jan 2026 00:00:00 GMT",
        "retry-after": "1, 2",  # as `httpx.Headers` itself joins a repeated header
    }
    assert _kept_headers(headers)["retry-after"] == headers["retry-after"]
