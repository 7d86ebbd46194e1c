"""Watch mode's loop: keep reading the account and report drift, or heal it (`--self-heal`).

Reading order:

1. `Watcher.run` — two tasks until `stop()`: the *listener* turns stream events into
   re-plan requests, the *worker* runs one reconcile cycle at a time.
2. Triggers — a cycle runs at start, after every (re)connect of the stream (events sent
   while it was down are lost), after relevant events (debounced), and every `interval`
   after the previous cycle ended. Events only decide *when*: every cycle re-reads the whole
   account, because stream events can be lost, duplicated or reordered and must never be
   trusted as state.
3. `Watcher._reconcile` — read, plan; in sync, or drift. Drift is healed only when every
   gate agrees (`reconciler.watch.gates`: `--self-heal`, no policy violation, the change
   windows, the circuit breaker). Healing is `reconciler.watch.heal`: the same engine,
   account lock, freshness check and journal as `reconciler apply`.
4. Shutdown — `stop()` (SIGTERM, Ctrl-C) cancels the worker; apply shields the calls in
   flight, so they finish and are journaled before the watcher returns.

Everything that waits is an asyncio primitive (an `Event` to wake the worker, a
`Condition` that tests await for cycle reports), the clock is injected, and the event source
is a factory, so tests drive the loop against a real sandbox without sleeping. The service
around it (client, signals, metrics server) is `reconciler.watch.service`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from reconciler.errors import ReconcilerError, SpecError
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import LevretError
from reconciler.levret.ratelimit import backoff_delay
from reconciler.levret.reader import read_snapshot
from reconciler.levret.stream import StreamEvent
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot, needs
from reconciler.model.windows import change_allowed
from reconciler.plan import plan as make_plan
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.config import Clock, WatchConfig, epoch_ms, utc_now
from reconciler.watch.cycle import CycleReport, CycleResult, brief
from reconciler.watch.eventlog import EventLog, Level
from reconciler.watch.gates import heal_held
from reconciler.watch.heal import Healer
from reconciler.watch.metrics import WatchMetrics

__all__ = ["WATCHED_EVENTS", "EventSource", "Watcher"]

WATCHED_EVENTS = frozenset({"orderUpdate", "positionUpdate", "marketData"})

EventSource = Callable[[], AbstractAsyncContextManager[AsyncIterable[StreamEvent]]]
_CANCEL_RETRY_S = 0.5


class Watcher:
    """The continuous reconcile loop; see the module docstring."""

    def __init__(
        self,
        *,
        client: LevretClient,
        desired: Callable[[], DesiredState],
        config: WatchConfig,
        log: EventLog,
        metrics: WatchMetrics,
        breaker: CircuitBreaker,
        events: EventSource | None,
        clock: Clock = utc_now,
        planner: Callable[[DesiredState, Snapshot], Plan] = make_plan,
    ) -> None:
        self.client = client
        self.config = config
        self.log = log
        self.metrics = metrics
        self.breaker = breaker
        self.reports: list[CycleReport] = []
        self.stream_ready = asyncio.Event()  # set while the event stream is connected
        self._desired_source = desired
        self._desired: DesiredState | None = None
        self._events = events
        self._clock = clock
        self._planner = planner
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._reported = asyncio.Condition()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_result: CycleResult | None = None
        self._last_drift: tuple[str, ...] | None = None  # the changes last warned about
        self._healer = Healer(
            client=client,
            config=config,
            log=log,
            metrics=metrics,
            breaker=breaker,
            clock=clock,
            planner=planner,
            publish=self._publish,
        )

    # ---- control

    def stop(self, why: str = "stop requested") -> None:
        """Ask the watcher to finish: calls in flight complete, nothing new starts."""
        if not self._stopping.is_set():
            self.log.info("stopping", reason=why)
            self._stopping.set()

    def request(self, trigger: str) -> None:
        """Ask for a cycle as soon as the current one (if any) ends."""
        self._pending.add(trigger)
        self._wake.set()

    async def wait_for_cycle(
        self, predicate: Callable[[CycleReport], bool], *, after: int = 0
    ) -> CycleReport:
        """The first cycle numbered above `after` that satisfies `predicate` (waits for it)."""
        async with self._reported:
            while True:
                for report in self.reports:
                    if report.number > after and predicate(report):
                        return report
                await self._reported.wait()

    @property
    def cycles(self) -> int:
        return len(self.reports)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def last_result(self) -> CycleResult | None:
        return self._last_result

    def health(self) -> tuple[bool, dict[str, object]]:
        """For `/healthz`: healthy once a cycle has finished, until the watcher stops.

        A tripped breaker or a held heal is not ill health: a restart must not reset the
        breaker, which is a person's decision (see docs/watch.md).
        """
        ok = self.cycles > 0 and not self.stopping
        return ok, {"cycles": self.cycles, "last_result": self._last_result}

    # ---- the loop

    async def run(self) -> None:
        """Run until `stop()`; returns after the calls in flight have finished."""
        self.log.info(
            "watch_started",
            self_heal=self.config.self_heal,
            interval_s=self.config.interval,
            user=self.client.user_id,
            stream=self._events is not None,
        )
        self.metrics.breaker_open.set(0)
        self.metrics.stream_connected.set(0)
        self.request("start")
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._work(), name="watch-worker")]
            if self._events is not None:
                tasks.append(group.create_task(self._listen(), name="watch-stream"))
            await self._stopping.wait()
            # Cancel until they are done: a library caught mid-handshake (the stream's
            # connect) can swallow one cancellation, and shutdown must not hang on it.
            while not all(task.done() for task in tasks):
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=_CANCEL_RETRY_S)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.log.info("watch_stopped", cycles=self.cycles)

    async def _work(self) -> None:
        while True:
            triggers = await self._next_triggers()
            await self._cycle(triggers)

    async def _next_triggers(self) -> tuple[str, ...]:
        """Wait for a requested cycle, or for `interval` to pass since the last one."""
        if not self._pending:
            try:
                async with asyncio.timeout(self.config.interval):
                    await self._wake.wait()
            except TimeoutError:
                self._pending.add("interval")
        triggers = tuple(sorted(self._pending))
        self._pending.clear()
        self._wake.clear()
        return triggers

    # ---- the stream

    async def _listen(self) -> None:
        """Consume events; on failure reconnect with jittered, growing delays."""
        assert self._events is not None
        attempt = 0
        while True:
            try:
                async with self._events() as stream:
                    attempt = 0
                    self._connected()
                    async for event in stream:
                        self._on_event(event)
                self.log.warning("stream_ended")
            except Exception as exc:  # the stream is a hint; losing it must not stop the reads
                self.log.warning(
                    "stream_failed", error=f"{type(exc).__name__}: {exc}", attempt=attempt + 1
                )
            finally:
                self.stream_ready.clear()
                self.metrics.stream_connected.set(0)
            attempt += 1
            delay = backoff_delay(
                attempt, initial=self.config.reconnect_initial, maximum=self.config.reconnect_max
            )
            self.log.info("stream_reconnecting", in_s=round(delay, 3), attempt=attempt)
            await asyncio.sleep(delay)

    def _connected(self) -> None:
        self.stream_ready.set()
        self.metrics.stream_connected.set(1)
        self.log.info("stream_connected")
        # Whatever happened while the stream was down was never heard: read it all now.
        self.request("connect")

    def _on_event(self, event: StreamEvent) -> None:
        kind = self._relevance(event)
        if kind is None or kind in self._timers:
            return
        delay = self.config.market_debounce if kind == "market" else self.config.debounce
        loop = asyncio.get_running_loop()
        self._timers[kind] = loop.call_later(delay, self._debounced, kind)

    def _debounced(self, kind: str) -> None:
        self._timers.pop(kind, None)
        self.request(kind)

    def _relevance(self, event: StreamEvent) -> str | None:
        """`event` or `market` when the event can change the plan, else None."""
        if event.name not in WATCHED_EVENTS:
            return None
        desired = self._desired
        symbol = getattr(event.payload, "symbol", None)
        if desired is None:
            return "market" if event.name == "marketData" else "event"
        if event.name == "marketData":
            reads = needs(desired)
            return "market" if reads.equity or symbol in reads.price_symbols else None
        if symbol in desired.symbols or desired.policy.unmanaged == "close":
            return "event"
        return None

    # ---- one cycle

    async def _cycle(self, triggers: tuple[str, ...]) -> None:
        number = len(self.reports) + 1
        started = self._clock()
        try:
            report = await self._reconcile(number, triggers, started)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one bad cycle must not end the service
            self.log.error("cycle_failed", cycle=number, error=f"{type(exc).__name__}: {exc}")
            self.metrics.cycle_errors.labels(stage="internal").inc()
            report = CycleReport(number, triggers, started, "error", detail=str(exc))
        await self._publish(report)

    async def _publish(self, report: CycleReport) -> None:
        primary = report.triggers[0] if len(report.triggers) == 1 else "+".join(report.triggers)
        self.metrics.cycles.labels(trigger=primary, result=report.result).inc()
        self.metrics.breaker_open.set(1 if self.breaker.state == "open" else 0)
        self._last_result = report.result
        async with self._reported:
            self.reports.append(report)
            self._reported.notify_all()

    def _load(self) -> DesiredState:
        try:
            self._desired = self._desired_source()
        except SpecError as exc:
            self.metrics.cycle_errors.labels(stage="load").inc()
            self.log.error(
                "desired_invalid", problems=list(exc.problems), using_last=self._desired is not None
            )
            if self._desired is None:
                raise
        return self._desired

    async def _reconcile(
        self, number: int, triggers: tuple[str, ...], started: datetime
    ) -> CycleReport:
        def report(
            result: CycleResult, drift: int = 0, held: str | None = None, detail: str = ""
        ) -> CycleReport:
            return CycleReport(number, triggers, started, result, drift, held, detail)

        desired = self._load()
        try:
            snapshot = await read_snapshot(self.client, desired)
            plan = self._planner(desired, snapshot)
        except (LevretError, ReconcilerError) as exc:
            self.metrics.cycle_errors.labels(stage="read").inc()
            self.log.warning("read_failed", cycle=number, error=str(exc))
            return report("error", detail=str(exc))
        now = self._clock()
        plan = plan.model_copy(update={"created_at_ms": epoch_ms(now)})
        window = change_allowed(desired.windows, now)
        self.metrics.window_open.set(1 if window.allowed else 0)
        self.metrics.drift_actions.set(len(plan.actions))

        if plan.is_empty:
            self._last_drift = None
            self._healer.converged(now)
            level: Level = "debug" if self._last_result == "in_sync" else "info"
            self.log.emit(level, "in_sync", cycle=number, trigger=triggers)
            return report("in_sync")

        changes = [brief(action) for action in plan.actions]
        # Once per change: the same drift seen again every cycle is not news (debug).
        repeated = tuple(changes) == self._last_drift
        self._last_drift = tuple(changes)
        self.log.emit(
            "debug" if repeated else "warning",
            "drift",
            cycle=number,
            trigger=triggers,
            actions=len(plan.actions),
            changes=changes,
            repeated=repeated,
        )
        held = heal_held(
            plan,
            window,
            now,
            self_heal=self.config.self_heal,
            breaker=self.breaker,
            metrics=self.metrics,
            log=self.log,
        )
        if held is not None:
            reason, detail = held
            self.metrics.heal_held.labels(reason=reason).inc()
            self.log.info("heal_held", cycle=number, reason=reason, detail=detail)
            return report("held", drift=len(plan.actions), held=reason, detail=detail)
        return await self._healer.heal(number, triggers, started, plan, desired)
