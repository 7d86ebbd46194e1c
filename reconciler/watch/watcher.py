"""Watch mode: keep reading the account and report drift, or heal it (`--self-heal`).

Reading order:

1. `Watcher.run` — two tasks until `stop()`: the *listener* turns stream events into
   re-plan requests, the *worker* runs one reconcile cycle at a time.
2. Triggers — a cycle runs at start, after every (re)connect of the stream (events sent
   while it was down are lost), after relevant events (debounced), and every `interval`
   after the previous cycle ended. Events only decide *when*: every cycle re-reads the whole
   account, because stream events can be lost, duplicated or reordered and must never be
   trusted as state.
3. `Watcher._reconcile` — read, plan; in sync, or drift. Drift is healed only when every
   gate agrees: `--self-heal`, no policy violation, the change windows (`reconciler.model.windows`)
   and the circuit breaker (`reconciler.watch.breaker`). Healing is `run_apply`: the same engine,
   account lock, freshness check and journal as `reconciler apply`.
4. Shutdown — `stop()` (SIGTERM, Ctrl-C) cancels the worker; apply shields the calls in
   flight, so they finish and are journaled before the watcher returns.

Everything that waits is an asyncio primitive (an `Event` to wake the worker, a
`Condition` that tests await for cycle reports), the clock is injected, and the event source
is a factory, so tests drive the loop against a real sandbox without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from reconciler.apply.engine import ApplyInterrupted, ApplyReport, run_apply
from reconciler.apply.settle import SettleConfig
from reconciler.apply.visibility import DEFAULT_VISIBILITY_TIMEOUT_S, VisibilityTracker
from reconciler.errors import LockHeld, PreconditionFailed, ReconcilerError, SpecError
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import LevretError
from reconciler.levret.ratelimit import backoff_delay
from reconciler.levret.reader import read_snapshot
from reconciler.levret.settings import ClientSettings
from reconciler.levret.stream import LevretStream, StreamEvent
from reconciler.model.desired import DesiredState, chosen_parallelism, load
from reconciler.model.plan import Action, Plan
from reconciler.model.snapshot import Snapshot, needs
from reconciler.model.windows import change_allowed
from reconciler.plan import plan as make_plan
from reconciler.render.progress import ActionFinished, ActionStarted, ApplyEvent, Settling
from reconciler.run.lock import DEFAULT_STATE_DIR, LockOptions, account_lock
from reconciler.run.workflow import narrow
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.eventlog import EventLog, Level, LoggingBridge
from reconciler.watch.metrics import MetricsServer, WatchMetrics

__all__ = [
    "WATCHED_EVENTS",
    "CycleReport",
    "DesiredFile",
    "EventSource",
    "WatchConfig",
    "Watcher",
    "serve",
]

WATCHED_EVENTS = frozenset({"orderUpdate", "positionUpdate", "marketData"})

EventSource = Callable[[], AbstractAsyncContextManager[AsyncIterable[StreamEvent]]]
Clock = Callable[[], datetime]
_CANCEL_RETRY_S = 0.5

CycleResult = Literal["in_sync", "healed", "not_converged", "held", "error", "interrupted"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
    max_passes: int = 3
    state_dir: Path = DEFAULT_STATE_DIR
    visibility_timeout: float | None = None  # None: the file's `apply`, else 30 s
    lock: LockOptions = field(default_factory=LockOptions)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.debounce < 0 or self.market_debounce < 0:
            raise ValueError("debounce must not be negative")


@dataclass(frozen=True)
class CycleReport:
    """One reconcile cycle: what started it, what the plan said, what was done about it."""

    number: int
    triggers: tuple[str, ...]
    started_at: datetime
    result: CycleResult
    drift: int = 0  # calls the plan needed at the start of the cycle
    held: str | None = None  # why drift was left alone (`report_only`, `window`, ...)
    detail: str = ""
    apply: ApplyReport | None = None


class DesiredFile:
    """The desired-state file, re-read when it changes on disk (e.g. to set `pause_until`).

    A change that does not validate raises `SpecError` on every call until it is fixed; the
    watcher then keeps working from the last good version and says so in the log.
    """

    def __init__(self, path: Path, targets: Iterable[str] = ()) -> None:
        self.path = path
        self.targets = tuple(targets)
        self._stamp: tuple[int, int] | None = None
        self._state: DesiredState | SpecError | None = None

    def __call__(self) -> DesiredState:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise SpecError([f"{self.path}: cannot read: {exc.strerror}"]) from None
        if stamp != self._stamp or self._state is None:
            self._stamp = stamp
            try:
                self._state = _without_one_shots(narrow(load(self.path), self.targets))
            except SpecError as exc:
                self._state = exc
        if isinstance(self._state, SpecError):
            raise self._state
        return self._state


def _without_one_shots(desired: DesiredState) -> DesiredState:
    """Refuse a file with `taker: true` orders: watch would send them again every cycle.

    A taker order fills at once and never rests, so each heal would see it missing and buy
    (or sell) once more, without end. It belongs in a file given to one `apply`.
    """
    problems = [
        desired.problem(
            ("symbols", symbol, "orders", index, "taker"),
            "a taker order fills at once and never rests, so watch would send it every "
            "cycle; remove it here and place it with one apply",
        )
        for symbol, entry in desired.symbols.items()
        for index, order in enumerate(entry.orders or ())
        if order.taker
    ]
    if problems:
        raise SpecError(problems)
    return desired


class _LogProgress:
    """Apply's progress events as log lines: each call sent (debug), finished, or settling."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def __call__(self, event: ApplyEvent) -> None:
        if isinstance(event, ActionStarted):
            self._log.debug(
                "action_sent", symbol=event.action.symbol, kind=event.action.kind, path=event.path
            )
        elif isinstance(event, ActionFinished):
            level: Level = (
                "info" if event.outcome in ("accepted", "settled_executed") else "warning"
            )
            self._log.emit(
                level,
                "action",
                symbol=event.action.symbol,
                kind=event.action.kind,
                outcome=event.outcome,
                pass_number=event.pass_number,
                detail=event.detail,
            )
        elif isinstance(event, Settling):
            self._log.warning("settling", symbol=event.action.symbol, kind=event.action.kind)


def _brief(action: Action) -> str:
    return f"{action.symbol} {action.kind}: {action.reason}"


def _notional(actions: Iterable[Action]) -> Decimal:
    return sum((abs(action.notional) for action in actions), Decimal(0))


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
        clock: Clock = _utc_now,
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
        # One for the watcher's life: a write a heal had accepted and the reads did not show
        # yet holds that symbol in every later heal until they do (never sent twice).
        self.visibility = VisibilityTracker()

    def _settle_config(self, desired: DesiredState) -> SettleConfig:
        """The visibility timeout of this heal: the option, else the file's, else 30 s."""
        timeout = self.config.visibility_timeout
        if timeout is None and desired.apply.visibility_timeout is not None:
            timeout = float(desired.apply.visibility_timeout)
        if timeout is None:
            timeout = DEFAULT_VISIBILITY_TIMEOUT_S
        self.visibility.timeout_s = timeout
        return SettleConfig(visibility_timeout_s=timeout)

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
        plan = plan.model_copy(update={"created_at_ms": _ms(now)})
        window = change_allowed(desired.windows, now)
        self.metrics.window_open.set(1 if window.allowed else 0)
        self.metrics.drift_actions.set(len(plan.actions))

        if plan.is_empty:
            self._last_drift = None
            self._converged(now)
            level: Level = "debug" if self._last_result == "in_sync" else "info"
            self.log.emit(level, "in_sync", cycle=number, trigger=triggers)
            return report("in_sync")

        changes = [_brief(action) for action in plan.actions]
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
        held = self._gate(plan, window.allowed, window.hold, window.reason, now)
        if held is not None:
            reason, detail = held
            self.metrics.heal_held.labels(reason=reason).inc()
            self.log.info("heal_held", cycle=number, reason=reason, detail=detail)
            return report("held", drift=len(plan.actions), held=reason, detail=detail)
        return await self._heal(number, triggers, started, plan, desired)

    def _gate(
        self, plan: Plan, allowed: bool, hold: str, why: str, now: datetime
    ) -> tuple[str, str] | None:
        """Why this drift must not be healed now, or None: (reason label, detail)."""
        if not self.config.self_heal:
            return "report_only", "run with --self-heal to heal"
        if plan.violations:
            return "policy", "; ".join(plan.violations)
        if not allowed:
            return ("pause" if hold == "pause" else "window"), why
        was_open = self.breaker.state == "open"
        admission = self.breaker.admit(len(plan.actions), _notional(plan.actions), now)
        if not admission.allowed:
            if not was_open:
                reason = self.breaker.open_reason or "budget"
                self.metrics.breaker_trips.labels(reason=reason).inc()
                self.log.warning("breaker_open", reason=admission.reason)
            self.metrics.breaker_open.set(1)
            return "breaker", admission.reason
        self.metrics.breaker_open.set(0)
        return None

    async def _heal(
        self,
        number: int,
        triggers: tuple[str, ...],
        started: datetime,
        plan: Plan,
        desired: DesiredState,
    ) -> CycleReport:
        drift = len(plan.actions)
        self.log.info("heal_started", cycle=number, actions=drift)
        try:
            applied = await run_apply(
                plan,
                client=self.client,
                desired=desired,
                read_snapshot=read_snapshot,
                planner=self._planner,
                state_dir=self.config.state_dir,
                now_ms=lambda: _ms(self._clock()),
                parallelism=chosen_parallelism(desired, self.config.parallelism),
                max_passes=self.config.max_passes,
                progress=_LogProgress(self.log),
                settle_config=self._settle_config(desired),
                visibility=self.visibility,
                lock=account_lock(
                    desired.lock,
                    self.config.lock,
                    base_url=self.client.settings.base_url,
                    user_id=plan.user_id,
                    on_wait=lambda text: self.log.info("lock_wait", cycle=number, detail=text),
                ),
            )
        except ApplyInterrupted as exc:
            self._account(exc.report)
            summary = exc.report.summary()
            self.log.warning("heal_interrupted", cycle=number, summary=summary)
            await self._publish(
                CycleReport(
                    number, triggers, started, "interrupted", drift, None, summary, exc.report
                )
            )
            raise asyncio.CancelledError from None
        except LockHeld as exc:
            self.metrics.heal_held.labels(reason="lock").inc()
            self.log.warning("heal_held", cycle=number, reason="lock", detail=str(exc))
            return CycleReport(number, triggers, started, "held", drift, "lock", str(exc))
        except PreconditionFailed as exc:
            # The account moved between the read and the lock: the events that moved it
            # (or the next interval) bring a fresh cycle.
            self.metrics.heal_held.labels(reason="stale").inc()
            self.log.info("heal_held", cycle=number, reason="stale", detail=str(exc))
            return CycleReport(number, triggers, started, "held", drift, "stale", str(exc))
        except (LevretError, ReconcilerError) as exc:
            self.metrics.cycle_errors.labels(stage="apply").inc()
            tripped = self.breaker.record(0, Decimal(0), self._clock(), ok=False)
            self._failed(number, str(exc), [], tripped)
            return CycleReport(number, triggers, started, "error", drift, detail=str(exc))
        tripped = self._account(applied)
        self.metrics.drift_actions.set(0 if applied.converged else len(applied.remaining))
        if applied.converged:
            self._converged(self._clock())
            self.log.info("healed", cycle=number, summary=applied.summary())
            return CycleReport(number, triggers, started, "healed", drift, apply=applied)
        self._failed(number, applied.summary(), [_brief(a) for a in applied.remaining], tripped)
        return CycleReport(
            number,
            triggers,
            started,
            "not_converged",
            drift,
            detail=applied.summary(),
            apply=applied,
        )

    def _account(self, applied: ApplyReport) -> bool:
        """Count what an apply sent (metrics, the breaker's budget); True if that tripped it."""
        sent = [result for result in applied.results if result.outcome != "not_sent"]
        for result in applied.results:
            self.metrics.actions.labels(kind=result.action.kind, outcome=result.outcome).inc()
        ok = applied.converged and not applied.interrupted
        return self.breaker.record(
            len(sent), _notional(result.action for result in sent), self._clock(), ok=ok
        )

    def _failed(self, number: int, detail: str, remaining: list[str], tripped: bool) -> None:
        """Alert on a failed apply; when it trips the breaker, alert louder (it latches)."""
        self.metrics.apply_failures.inc()
        self.log.error(
            "apply_failed",
            cycle=number,
            detail=detail,
            remaining=remaining,
            failures_in_a_row=self.breaker.failures,
        )
        if tripped:
            self.metrics.breaker_trips.labels(reason="failures").inc()
            self.metrics.breaker_open.set(1)
            self.log.error(
                "breaker_tripped",
                reason=f"{self.breaker.failures} failed applies in a row",
                action="healing stopped until restart; drift is still reported",
            )

    def _converged(self, now: datetime) -> None:
        self.metrics.last_converged.set(now.timestamp())
        self.breaker.in_sync()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- the service ----------------------------------------------------------------------------


async def serve(
    settings: ClientSettings,
    desired: Callable[[], DesiredState],
    config: WatchConfig,
    *,
    log: EventLog,
    breaker: CircuitBreaker,
    metrics: WatchMetrics | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run a watcher against `settings` until SIGTERM, SIGHUP or Ctrl-C: `watch`'s body."""
    metrics = metrics if metrics is not None else WatchMetrics(account=settings.user_id)
    package_logger = logging.getLogger("reconciler")
    bridge = LoggingBridge(log)
    previous_level = package_logger.level
    package_logger.addHandler(bridge)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    loop = asyncio.get_running_loop()
    # SIGHUP (a closed session) stops it like SIGTERM (a service stop) and Ctrl-C.
    signals = tuple(
        getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
    )
    try:
        async with LevretClient(settings) as client:
            watcher = Watcher(
                client=client,
                desired=desired,
                config=config,
                log=log,
                metrics=metrics,
                breaker=breaker,
                events=lambda: LevretStream(settings),
            )
            for signum in signals:
                loop.add_signal_handler(signum, watcher.stop, signal.Signals(signum).name)
            with ExitStack() as stack:
                if metrics_port is not None:
                    server = stack.enter_context(
                        MetricsServer(
                            metrics, port=metrics_port, host=metrics_host, health=watcher.health
                        )
                    )
                    log.info("metrics_serving", url=server.url)
                await watcher.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        package_logger.removeHandler(bridge)
        package_logger.setLevel(previous_level)
