"""Watch mode against a real sandbox: events, interval re-reads, windows, breaker, metrics.

Out-of-band orders are placed the way another trader would place them: a signed HTTP call
with the demo key, so the sandbox emits its stream events. Nothing here sleeps to
synchronise: tests await the watcher's cycle reports (an asyncio condition) and bound every
wait with a timeout. The sandbox's request log proves what the watcher did and did not send.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from pydantic import SecretStr

from reconciler.levret.client import LevretClient
from reconciler.levret.errors import TransportError
from reconciler.levret.settings import ClientSettings
from reconciler.levret.stream import LevretStream, StreamEvent
from reconciler.model.account import Order
from reconciler.model.desired import DesiredState, loads
from reconciler.run.lock import LockOptions, account_lock
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.config import WatchConfig
from reconciler.watch.cycle import CycleReport
from reconciler.watch.eventlog import EventLog
from reconciler.watch.metrics import MetricsServer, WatchMetrics
from reconciler.watch.watcher import EventSource, Watcher
from tests.conftest import RunningSandbox

WAIT_S = 30

# The demo account's two resting SOL orders, and nothing else managed: in sync at start.
DESIRED = """\
version: 1
account: {user_id: demo}
symbols:
  SOL_USDT:
    orders:
      - {side: buy, price: 90, size: 10}
      - {side: buy, price: 85, size: 10}
"""


def settings(sandbox: RunningSandbox, **extra: Any) -> ClientSettings:
    return ClientSettings(
        api_key_id="demo-key",
        api_key_secret=SecretStr("demo-secret"),
        user_id="demo",
        base_url=sandbox.api_url,
        **extra,
    )


class Captured:
    """A text stream for `EventLog(json)`: keeps each event, and runs hooks on them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.hooks: list[Callable[[dict[str, Any]], None]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            event = json.loads(line)
            self.events.append(event)
            for hook in self.hooks:
                hook(event)
        return len(text)

    def flush(self) -> None:
        return None

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == name]


class DroppingStream:
    """A real stream whose every event is lost on the way: what a lossy stream looks like."""

    def __init__(self, stream: LevretStream) -> None:
        self.stream = stream
        self.dropped = 0

    async def __aenter__(self) -> Self:
        await self.stream.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stream.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        async for _event in self.stream:
            self.dropped += 1
        return
        yield  # an async generator that never yields


@asynccontextmanager
async def watching(
    sandbox: RunningSandbox,
    tmp_path: Path,
    *,
    desired: str = DESIRED,
    config: WatchConfig | None = None,
    breaker: CircuitBreaker | None = None,
    events: str | EventSource = "stream",
    clock: Callable[[], datetime] | None = None,
    client_settings: ClientSettings | None = None,
) -> AsyncIterator[tuple[Watcher, Captured]]:
    """A running watcher over `sandbox`; stopped (and awaited) on exit."""
    state: DesiredState = loads(desired)
    base = settings(sandbox)
    source: EventSource | None = None
    if callable(events):
        source = events
    elif events == "stream":
        source = lambda: LevretStream(base)  # noqa: E731
    elif events == "dropping":
        source = lambda: DroppingStream(LevretStream(base))  # noqa: E731
    captured = Captured()
    cfg = config or WatchConfig(self_heal=True, interval=60, debounce=0.1)
    cfg = WatchConfig(**{**cfg.__dict__, "state_dir": tmp_path / "state"})
    async with LevretClient(client_settings or base) as client:
        watcher = Watcher(
            client=client,
            desired=lambda: state,
            config=cfg,
            log=EventLog("json", stream=captured, min_level="debug"),  # type: ignore[arg-type]
            metrics=WatchMetrics(),
            breaker=breaker or CircuitBreaker(),
            events=source,
            **({"clock": clock} if clock is not None else {}),
        )
        task = asyncio.create_task(watcher.run())
        try:
            async with asyncio.timeout(WAIT_S):
                yield watcher, captured
        except BaseException as exc:
            exc.add_note("watch log:\n" + "\n".join(json.dumps(e) for e in captured.events))
            raise
        finally:
            watcher.stop("test over")
            async with asyncio.timeout(WAIT_S):
                await task


async def until(watcher: Watcher, predicate: Callable[[CycleReport], bool], after: int = 0) -> Any:
    async with asyncio.timeout(WAIT_S):
        return await watcher.wait_for_cycle(predicate, after=after)


async def ready(watcher: Watcher) -> CycleReport:
    """Wait until the stream is connected and the cycle its connection asked for has run."""
    report: CycleReport = await until(watcher, lambda r: "connect" in r.triggers)
    assert report.result == "in_sync", report
    return report


async def place_out_of_band(sandbox: RunningSandbox, price: int = 80) -> Order:
    """Another trader's resting order on the managed symbol, over signed HTTP."""
    async with LevretClient(settings(sandbox)) as other:
        return await other.create_order(
            "SOL_USDT", "buy", "limit", Decimal(1), price=Decimal(price), leverage=5
        )


def posts(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    return [entry for entry in sandbox.requests() if entry["method"] == "POST"]


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str) -> float:
    """The value of one exposition line `name value` (`name` with its labels, if any; every
    series also carries an `account` label, which a bare `name` matches too)."""
    for line in text.splitlines():
        line = re.sub(r'account="[^"]*",?', "", line).replace("{}", "")
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the scrape:\n{text}")


# -- the event path ----------------------------------------------------------------------------


def test_out_of_band_order_is_seen_through_events_and_cancelled(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with watching(sandbox, tmp_path) as (watcher, log):
            start = await ready(watcher)
            placed_at = time.monotonic()
            order = await place_out_of_band(sandbox)
            healed = await until(watcher, lambda r: r.result == "healed", after=start.number)
            elapsed = time.monotonic() - placed_at
            # The interval is 60 s: only the event path can have started this cycle.
            assert healed.triggers == ("event",), healed
            assert elapsed < 2.0, elapsed
            assert healed.drift == 1
            metrics = watcher.metrics.exposition().decode()
            assert sample(metrics, "reconciler_drift_actions") == 0
            async with LevretClient(settings(sandbox)) as client:
                assert (await client.get_order(order.id)).status == "cancelled"
            cancels = [p for p in await asyncio.to_thread(posts, sandbox) if "cancel" in p["path"]]
            assert len(cancels) == 1 and order.id in json.dumps(cancels[0]), cancels
            assert [e["outcome"] for e in log.named("action")] == ["accepted"]
            assert log.named("drift")[0]["changes"] == [
                f"SOL_USDT cancel_order: {healed.apply.results[0].action.reason}"  # type: ignore[union-attr]
            ]

    asyncio.run(scenario())


def test_a_heal_waits_for_the_account_lock_with_a_timeout_then_heals(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Another apply holds the lock (here: this test); the heal says whom it waits for."""
    config = WatchConfig(self_heal=True, interval=60, debounce=0.1,
                         lock=LockOptions(timeout_s=WAIT_S))  # fmt: skip

    async def scenario() -> None:
        async with watching(sandbox, tmp_path, config=config) as (watcher, log):
            start = await ready(watcher)
            waiting = asyncio.Event()
            log.hooks.append(lambda event: event["event"] == "lock_wait" and waiting.set())
            with account_lock(None, base_url=sandbox.api_url, user_id="demo"):
                await place_out_of_band(sandbox)
                async with asyncio.timeout(WAIT_S):
                    await waiting.wait()
                assert not watcher.reports[-1:] or watcher.reports[-1].number == start.number
            healed = await until(watcher, lambda r: r.result == "healed", after=start.number)
            assert healed.drift == 1
            (wait,) = log.named("lock_wait")
            assert f"held by pid {os.getpid()} on " in wait["detail"]

    asyncio.run(scenario())


def test_report_only_reports_drift_and_sends_nothing(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        config = WatchConfig(self_heal=False, interval=60, debounce=0.1)
        async with watching(sandbox, tmp_path, config=config) as (watcher, log):
            start = await ready(watcher)
            await asyncio.to_thread(sandbox.clear_requests)
            await place_out_of_band(sandbox)
            held = await until(watcher, lambda r: r.result == "held", after=start.number)
            assert held.held == "report_only" and held.drift == 1
            assert held.triggers == ("event",)
            assert [p["path"] for p in await asyncio.to_thread(posts, sandbox)] == [
                "/api/v1/order"  # the out-of-band order itself, and nothing from the watcher
            ]
            assert log.named("drift")[-1]["actions"] == 1

    asyncio.run(scenario())


def test_the_same_drift_is_warned_once_then_again_only_when_it_changes(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        config = WatchConfig(self_heal=False, interval=60, debounce=0.1)
        async with watching(sandbox, tmp_path, config=config) as (watcher, log):
            start = await ready(watcher)
            await place_out_of_band(sandbox)
            first = await until(watcher, lambda r: r.result == "held", after=start.number)
            watcher.request("interval")  # the same drift, read again
            again = await until(watcher, lambda r: r.result == "held", after=first.number)
            await place_out_of_band(sandbox, price=79)  # the drift changes
            changed = await until(watcher, lambda r: r.drift == 2, after=again.number)
            levels = [(event["level"], event["repeated"]) for event in log.named("drift")]
            assert levels[:2] == [("warning", False), ("debug", True)], levels
            assert levels[-1] == ("warning", False), levels
            assert changed.held == "report_only"

    asyncio.run(scenario())


# -- the interval path -----------------------------------------------------------------------


def test_interval_reread_heals_when_every_event_is_dropped(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        config = WatchConfig(self_heal=True, interval=0.2, debounce=0.1)
        async with watching(sandbox, tmp_path, config=config, events="dropping") as (watcher, _):
            start = await ready(watcher)
            order = await place_out_of_band(sandbox)
            healed = await until(watcher, lambda r: r.result == "healed", after=start.number)
            assert healed.triggers == ("interval",), healed
            async with LevretClient(settings(sandbox)) as client:
                assert (await client.get_order(order.id)).status == "cancelled"

    asyncio.run(scenario())


def test_without_a_stream_the_interval_still_reads(sandbox: RunningSandbox, tmp_path: Path) -> None:
    async def scenario() -> None:
        config = WatchConfig(self_heal=False, interval=0.2)
        async with watching(sandbox, tmp_path, config=config, events="none") as (watcher, _):
            first = await until(watcher, lambda r: r.triggers == ("start",))
            assert first.result == "in_sync"
            later = await until(watcher, lambda r: r.triggers == ("interval",))
            assert later.result == "in_sync"
            assert not watcher.stream_ready.is_set()

    asyncio.run(scenario())


# -- windows ---------------------------------------------------------------------------------


def test_outside_a_window_drift_is_reported_and_nothing_is_sent(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    desired = DESIRED + "windows:\n  deny: ['* * * * *']\n"

    async def scenario() -> None:
        await place_out_of_band(sandbox)
        await asyncio.to_thread(sandbox.clear_requests)
        async with watching(sandbox, tmp_path, desired=desired) as (watcher, log):
            held = await until(watcher, lambda r: r.result != "in_sync")
            assert held.result == "held" and held.held == "window", held
            assert "deny rule '* * * * *' matches" in held.detail
            assert log.named("heal_held")[0]["reason"] == "window"
        assert await asyncio.to_thread(posts, sandbox) == []

    asyncio.run(scenario())


def test_pause_until_holds_and_lifts_at_its_time(sandbox: RunningSandbox, tmp_path: Path) -> None:
    desired = DESIRED + "windows:\n  pause_until: 2030-01-01T12:00:00Z\n"
    now = [datetime(2030, 1, 1, 11, 59, 30, tzinfo=UTC)]

    async def scenario() -> None:
        order = await place_out_of_band(sandbox)
        config = WatchConfig(self_heal=True, interval=60, debounce=0.1)
        async with watching(
            sandbox, tmp_path, desired=desired, config=config, clock=lambda: now[0]
        ) as (watcher, _):
            held = await until(watcher, lambda r: r.result != "in_sync")
            assert held.held == "pause" and "2030-01-01T12:00:00Z" in held.detail
            assert not [p for p in await asyncio.to_thread(posts, sandbox) if "cancel" in p["path"]]
            now[0] = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
            watcher.request("test")
            healed = await until(watcher, lambda r: r.result == "healed", after=held.number)
            assert healed.drift == 1
        async with LevretClient(settings(sandbox)) as client:
            assert (await client.get_order(order.id)).status == "cancelled"

    asyncio.run(scenario())


# -- the circuit breaker and the metrics -----------------------------------------------------


def test_breaker_budget_stops_the_second_heal_and_metrics_say_so(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        breaker = CircuitBreaker(max_actions=1)
        async with watching(sandbox, tmp_path, breaker=breaker) as (watcher, log):
            with MetricsServer(watcher.metrics, port=0) as server:
                start = await ready(watcher)
                first = await place_out_of_band(sandbox, price=80)
                healed = await until(watcher, lambda r: r.result == "healed", after=start.number)
                second = await place_out_of_band(sandbox, price=81)
                held = await until(watcher, lambda r: r.result == "held", after=healed.number)
                assert held.held == "breaker" and "exceed 1 per hour" in held.detail
                text = await asyncio.to_thread(scrape, server.url)
        assert sample(text, "reconciler_breaker_open") == 1
        assert sample(text, "reconciler_drift_actions") == 1
        assert sample(text, 'reconciler_breaker_trips_total{reason="budget"}') == 1
        assert sample(text, 'reconciler_heal_held_total{reason="breaker"}') == 1
        assert sample(text, 'reconciler_actions_total{kind="cancel_order",outcome="accepted"}') == 1
        assert sample(text, "reconciler_apply_failures_total") == 0
        assert sample(text, "reconciler_stream_connected") == 1
        assert sample(text, "reconciler_change_window_open") == 1
        assert sample(text, "reconciler_last_converged_timestamp_seconds") > 0
        assert log.named("breaker_open")[0]["level"] == "warning"
        async with LevretClient(settings(sandbox)) as client:
            assert (await client.get_order(first.id)).status == "cancelled"
            assert (await client.get_order(second.id)).status == "open"

    asyncio.run(scenario())


def test_failed_applies_in_a_row_trip_the_breaker_until_restart(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        order = await place_out_of_band(sandbox)
        await asyncio.to_thread(sandbox.set_faults, {"seed": 1, "fail_before": 1.0})
        config = WatchConfig(self_heal=True, interval=0.2, max_passes=1, visibility_timeout=0.5)
        breaker = CircuitBreaker(max_failures=2)
        fast = settings(sandbox, max_attempts=1)
        async with watching(
            sandbox, tmp_path, config=config, breaker=breaker, client_settings=fast
        ) as (watcher, log):
            held = await until(watcher, lambda r: r.held == "breaker")
            failed = [r for r in watcher.reports if r.result in ("not_converged", "error")]
            assert len(failed) == 2, watcher.reports
            assert "failures" in held.detail
            assert breaker.tripped
            assert log.named("breaker_tripped")[0]["level"] == "error"
            text = watcher.metrics.exposition().decode()
        assert sample(text, "reconciler_apply_failures_total") == 2
        assert sample(text, 'reconciler_breaker_trips_total{reason="failures"}') == 1
        assert sample(text, "reconciler_breaker_open") == 1
        async with LevretClient(settings(sandbox)) as client:
            assert (await client.get_order(order.id)).status == "open"

    asyncio.run(scenario())


# -- shutdown --------------------------------------------------------------------------------


def test_stop_lets_the_call_in_flight_finish_and_journals_it(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async def scenario() -> None:
        order = await place_out_of_band(sandbox)
        await asyncio.to_thread(sandbox.set_faults, {"latency_ms": [300, 300]})
        async with watching(sandbox, tmp_path, events="none") as (watcher, log):
            # Stop the moment the cancel is on the wire, as SIGTERM might.
            log.hooks.append(
                lambda event: watcher.stop("SIGTERM") if event["event"] == "action_sent" else None
            )
            stopped = await until(watcher, lambda r: r.result == "interrupted")
            assert stopped.apply is not None and stopped.apply.interrupted
        assert log.named("heal_interrupted"), log.events
        assert log.named("action")[0]["outcome"] == "accepted"
        async with LevretClient(settings(sandbox)) as client:
            assert (await client.get_order(order.id)).status == "cancelled"
        journals = list((tmp_path / "state" / "journal").glob("*.jsonl"))
        records = [json.loads(line) for line in journals[0].read_text().splitlines()]
        types = [record["type"] for record in records]
        assert "result" in types and types[-1] == "end", types

    asyncio.run(scenario())


# -- the stream's reconnects -----------------------------------------------------------------


def test_a_failing_stream_is_retried_with_backoff_and_reads_go_on(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    opened: list[int] = []

    def flaky() -> Any:
        """Refuses twice, as an exchange whose stream is down would, then connects."""
        opened.append(1)
        if len(opened) <= 2:
            raise TransportError("the stream could not connect", sent=False)
        return LevretStream(settings(sandbox))

    async def scenario() -> None:
        config = WatchConfig(reconnect_initial=0.01, reconnect_max=0.02)
        async with watching(sandbox, tmp_path, config=config, events=flaky) as (watcher, log):
            await ready(watcher)
            assert watcher.reports[0].triggers == ("start",)  # reads did not wait for the stream
        failures = log.named("stream_failed")
        assert [f["attempt"] for f in failures] == [1, 2]
        assert "TransportError" in failures[0]["error"]
        assert len(log.named("stream_reconnecting")) == 2

    asyncio.run(scenario())


# -- read lag: never twice across cycles --------------------------------------------------------

WANTS_A_THIRD_ORDER = DESIRED + "      - {side: buy, price: 80, size: 1}\n"


@pytest.mark.parametrize(
    ("lag_ms", "visibility_timeout"), [(3_000, 30.0), (8_000, 30.0), (3_000, 0.5)]
)
def test_self_heal_under_read_lag_places_the_missing_order_once_over_many_cycles(
    lag_ms: int, visibility_timeout: float, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Reads trail writes by seconds while cycles run every 0.2 s: one order, never more.

    With a visibility timeout longer than the lag, the heal waits for its order to show. With
    a shorter one, the heal stops unseen (not converged) and every later cycle, reading an
    account that still lacks the order, is held by the watcher's memory of it until the
    reads catch up.
    """
    sandbox.set_faults({"read_lag_ms": lag_ms})
    sandbox.clear_requests()

    async def scenario() -> None:
        config = WatchConfig(
            self_heal=True, interval=0.2, debounce=0.05, visibility_timeout=visibility_timeout
        )
        async with watching(
            sandbox, tmp_path, desired=WANTS_A_THIRD_ORDER, config=config, events="none"
        ) as (watcher, _):
            first = await until(watcher, lambda r: r.apply is not None)
            assert first.apply is not None
            assert first.apply.converged is (visibility_timeout * 1000 > lag_ms), (
                first.apply.table()
            )
            synced = await until(watcher, lambda r: r.result == "in_sync", after=first.number + 3)
            assert synced.number >= first.number + 4
            placed = [
                p for p in await asyncio.to_thread(posts, sandbox) if p["path"] == "/api/v1/order"
            ]
            assert len(placed) == 1, placed

    asyncio.run(scenario())
