"""One heal of a drift: the plan applied as `reconciler apply` would, and its outcome counted.

Healing is `run_apply`: the same engine, account lock, freshness check and journal as
`reconciler apply`. What watch adds is the accounting of an unattended run: every call sent is
counted in the metrics and in the circuit breaker's budget, a failed apply counts towards the
breaker's trip (alerted louder when it trips, since it latches), and each outcome becomes the
cycle's report: healed, not converged, held (the lock, a stale read) or an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

from reconciler.apply.engine import run_apply
from reconciler.apply.events import ActionFinished, ActionStarted, ApplyEvent, Settling
from reconciler.apply.report import ApplyInterrupted, ApplyReport
from reconciler.apply.settle import SettleConfig
from reconciler.apply.visibility import DEFAULT_VISIBILITY_TIMEOUT_S, VisibilityTracker
from reconciler.errors import LockHeld, PreconditionFailed, ReconcilerError
from reconciler.levret.client import LevretClient
from reconciler.levret.errors import LevretError
from reconciler.levret.reader import read_snapshot
from reconciler.model.desired import DesiredState, chosen_parallelism
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot
from reconciler.run.lock import account_lock
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.config import Clock, WatchConfig, epoch_ms
from reconciler.watch.cycle import CycleReport, brief
from reconciler.watch.eventlog import EventLog, Level
from reconciler.watch.gates import notional
from reconciler.watch.metrics import WatchMetrics

__all__ = ["Healer"]


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


class Healer:
    """The watcher's hand on the account: applies a cycle's plan and accounts for the outcome."""

    def __init__(
        self,
        *,
        client: LevretClient,
        config: WatchConfig,
        log: EventLog,
        metrics: WatchMetrics,
        breaker: CircuitBreaker,
        clock: Clock,
        planner: Callable[[DesiredState, Snapshot], Plan],
        publish: Callable[[CycleReport], Awaitable[None]],
    ) -> None:
        self.client = client
        self.config = config
        self.log = log
        self.metrics = metrics
        self.breaker = breaker
        self._clock = clock
        self._planner = planner
        self._publish = publish
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

    async def heal(
        self,
        number: int,
        triggers: tuple[str, ...],
        started: datetime,
        plan: Plan,
        desired: DesiredState,
    ) -> CycleReport:
        """Apply `plan` for cycle `number`; its report. An interrupted heal is published as
        such, then the cancellation that interrupted it goes on (`CancelledError`)."""
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
                now_ms=lambda: epoch_ms(self._clock()),
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
            self.converged(self._clock())
            self.log.info("healed", cycle=number, summary=applied.summary())
            return CycleReport(number, triggers, started, "healed", drift, apply=applied)
        self._failed(number, applied.summary(), [brief(a) for a in applied.remaining], tripped)
        return CycleReport(
            number,
            triggers,
            started,
            "not_converged",
            drift,
            detail=applied.summary(),
            apply=applied,
        )

    def converged(self, now: datetime) -> None:
        """The account matches the file, healed or by itself: the breaker's budget hold ends."""
        self.metrics.last_converged.set(now.timestamp())
        self.breaker.in_sync()

    def _account(self, applied: ApplyReport) -> bool:
        """Count what an apply sent (metrics, the breaker's budget); True if that tripped it."""
        sent = [result for result in applied.results if result.outcome != "not_sent"]
        for result in applied.results:
            self.metrics.actions.labels(kind=result.action.kind, outcome=result.outcome).inc()
        ok = applied.converged and not applied.interrupted
        return self.breaker.record(
            len(sent), notional(result.action for result in sent), self._clock(), ok=ok
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
