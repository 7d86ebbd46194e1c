"""Apply: execute a plan's calls safely, then prove the account converged.

Reading order:

1. `run_apply` — the whole command: take the account lock, journal the plan, refuse a stale
   plan (`check_fresh`) before anything is sent, then `apply_plan`.
2. `apply_plan` — passes. Pass 1 executes the given plan. After each pass the account is
   re-read and re-planned; drift left by partial fills, moved prices or settled unknowns is
   executed by the next pass, up to `max_passes` extra passes. Each pass sends only what its
   own freshly computed plan shows.
3. `_Engine.run_pass` — phases in `Phase` order, each a barrier: every symbol finishes
   cancelling orders before any leverage changes, every reduction lands before any increase,
   so the account never needs more margin than it has. Within a phase symbols run
   concurrently (at most `parallelism` at once); within a symbol calls run strictly one after
   another. A call that is not plainly accepted stops that symbol's later calls in the pass,
   never another symbol's.
4. `_Engine.execute` — one call: resolve the position-id placeholder, take a baseline when the
   call is unsafe (`_Engine.baseline`: an order's from the pass's snapshot and one read of
   recent fills per pass, a margin move's from a read just before it), send exactly the
   planned request, classify the outcome, and settle an unknown outcome from reads
   (`reconciler.apply.settle`) — never by sending it again.

Apply prints nothing: it reports through a `ProgressSink` and the journal. Cancellation
(Ctrl-C) stops scheduling, lets calls already in flight finish and be journaled (sends are
shielded), then raises `ApplyInterrupted` carrying the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, assert_never, cast

import anyio
import anyio.lowlevel

from reconciler import plan as planner_module
from reconciler.apply.journal import JOURNAL_FORMAT, Journal, Outcome
from reconciler.apply.outcome import Outcome as CallOutcome
from reconciler.apply.outcome import classify
from reconciler.apply.settle import (
    Baseline,
    SettleClient,
    SettleConfig,
    Settlement,
    needs_baseline,
    recent_fill_order_ids,
    settle,
    take_baseline,
)
from reconciler.apply.visibility import Expectation, VisibilityTracker, expectation_for
from reconciler.defaults import DEFAULT_MAX_PRICE_MOVE_BPS, DEFAULT_PARALLELISM
from reconciler.errors import (
    OrderNotOpen,
    OutcomeUnknown,
    PartialApply,
    PreconditionFailed,
    ReconcilerError,
    TransportError,
    VenueError,
)
from reconciler.model.account import CancelAllResult, Order, Position
from reconciler.model.intents import Answer, CancelOrder, Intent, with_position
from reconciler.model.plan import Action, Phase, Plan, Request
from reconciler.model.snapshot import Snapshot
from reconciler.render.progress import (
    ActionFinished,
    ActionStarted,
    ApplyFinished,
    NullProgress,
    PassStarted,
    ProgressSink,
    Settling,
    Verified,
)
from reconciler.run.lock import DEFAULT_STATE_DIR, AccountLock, account_lock

__all__ = [
    "DEFAULT_MAX_AGE_MS",
    "DEFAULT_MAX_PRICE_MOVE_BPS",
    "ActionResult",
    "ApplyClient",
    "ApplyFailed",
    "ApplyInterrupted",
    "ApplyReport",
    "PassReport",
    "SnapshotReader",
    "apply_plan",
    "check_fresh",
    "run_apply",
]

DEFAULT_MAX_AGE_MS = 15 * 60 * 1000

D = TypeVar("D")
C = TypeVar("C", bound="ApplyClient")
D_contra = TypeVar("D_contra", contravariant=True)
C_contra = TypeVar("C_contra", contravariant=True)


class ApplyClient(SettleClient, Protocol):
    """What apply needs from a venue: the settlement reads, and intents carried out.

    `request_for` is the exact call the venue makes of an intent (journalled before it is
    sent); `execute` sends it and reads the answer into the domain.
    """

    def request_for(self, intent: Intent) -> Request: ...

    async def execute(self, intent: Intent) -> Answer: ...


class SnapshotReader(Protocol[C_contra, D_contra]):
    """`reconciler.levret.reader.read_snapshot`: read the account (optionally only some symbols)."""

    def __call__(
        self, client: C_contra, desired: D_contra, /, *, symbols: Iterable[str] | None = None
    ) -> Awaitable[Snapshot]: ...


Planner = Callable[[D, Snapshot], Plan]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    """What happened to one planned call in one pass."""

    pass_number: int
    index: int
    action: Action
    outcome: Outcome
    detail: str = ""
    path: str | None = None  # as sent, placeholder resolved; None when not sent
    status: int | None = None
    code: str | None = None
    latency_ms: float | None = None
    settlement: Settlement | None = None


@dataclass(frozen=True)
class PassReport:
    number: int
    plan: Plan
    results: tuple[ActionResult, ...]


@dataclass(frozen=True)
class ApplyReport:
    """The whole apply: every pass's results and whether the account now matches the spec."""

    user_id: str
    passes: tuple[PassReport, ...]
    converged: bool
    interrupted: bool = False
    remaining: tuple[Action, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    journal_path: Path | None = None
    rate_limited: int = 0  # 429s the exchange answered during the run (each was resent)

    @property
    def exit_code(self) -> int:
        return 0 if self.converged and not self.interrupted else PartialApply.exit_code

    @property
    def results(self) -> tuple[ActionResult, ...]:
        return tuple(result for report in self.passes for result in report.results)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return counts

    def summary(self) -> str:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts().items()))
        passes = f"{len(self.passes)} pass{'es' if len(self.passes) != 1 else ''}"
        if self.interrupted:
            head = "interrupted"
        elif self.converged:
            head = "converged"
        else:
            head = f"not converged ({len(self.remaining)} action(s) still planned)"
        limited = (
            f"; {self.rate_limited} rate-limited (429) and resent" if self.rate_limited else ""
        )
        return f"{head} after {passes}" + (f": {counts}" if counts else "") + limited

    def rows(self) -> list[tuple[str, ...]]:
        """The table of what happened, one row per planned call per pass."""
        rows: list[tuple[str, ...]] = []
        for result in self.results:
            code = result.code or ""
            rows.append(
                (
                    str(result.pass_number),
                    str(result.index + 1),
                    result.action.symbol,
                    result.action.kind,
                    result.action.phase.name.lower(),
                    result.outcome,
                    code,
                    result.detail,
                )
            )
        return rows

    def table(self) -> str:
        """`rows()` as aligned plain text, followed by what is left and why."""
        header = ("pass", "#", "symbol", "action", "phase", "outcome", "code", "detail")
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[-1]
            for row in rows
        ]
        for action in self.remaining:
            lines.append(f"still planned: {action.symbol} {action.kind} ({action.reason})")
        for symbol, why in sorted(self.excluded.items()):
            lines.append(f"left alone: {symbol}: {why}")
        lines.extend(f"problem: {problem}" for problem in self.problems)
        if self.journal_path is not None:
            lines.append(f"journal: {self.journal_path}")
        return "\n".join(line.rstrip() for line in lines)

    def raise_for_status(self) -> None:
        """Raise `ApplyFailed` (exit 5) unless the account converged."""
        if self.exit_code != 0:
            raise ApplyFailed(self)


class ApplyFailed(PartialApply):
    """Some calls failed or the account did not converge; `report` says which and why."""

    def __init__(self, report: ApplyReport) -> None:
        self.report = report
        super().__init__(f"{report.summary()}\n{report.table()}")


class ApplyInterrupted(ApplyFailed):
    """Apply was cancelled (Ctrl-C); calls in flight finished and were journaled."""


# -- preconditions ---------------------------------------------------------------------------


def check_fresh(
    plan: Plan,
    snapshot_now: Snapshot,
    *,
    now_ms: int,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS,
) -> None:
    """Refuse (`PreconditionFailed`, exit 3) a plan the account has moved away from.

    A saved plan is a promise about one moment: its calls (cancel order 42, close position 7,
    buy 0.5) are only right if the symbols they touch still look as they did. Every problem
    is listed at once.
    """
    problems: list[str] = []
    if plan.user_id != snapshot_now.user_id:
        problems.append(f"plan is for user {plan.user_id!r}, the key is {snapshot_now.user_id!r}")
    if plan.created_at_ms is None:
        problems.append("plan has no creation time, so its age cannot be checked")
    elif now_ms - plan.created_at_ms > max_age_ms:
        age_s = (now_ms - plan.created_at_ms) / 1000
        problems.append(
            f"plan is {age_s:.0f} s old, more than the {max_age_ms / 1000:.0f} s allowed"
        )
    touched = sorted({action.symbol for action in plan.actions})
    for symbol in touched:
        planned = plan.symbol_fingerprints.get(symbol)
        if planned is None:
            problems.append(f"{symbol}: plan has no fingerprint for it")
        elif planned != snapshot_now.symbol_fingerprint(symbol):
            problems.append(f"{symbol}: positions or open orders changed since the plan")
    for symbol in touched:  # an untouched symbol's price cannot make these calls wrong
        planned_mark = plan.marks.get(symbol)
        if planned_mark is None:
            continue
        now = snapshot_now.mark(symbol)
        if now is None:
            problems.append(f"{symbol}: no current mark to compare with the plan's {planned_mark}")
            continue
        if planned_mark <= 0:
            continue
        moved_bps = abs(now - planned_mark) / planned_mark * 10_000
        if moved_bps > max_price_move_bps:
            problems.append(
                f"{symbol}: mark moved {moved_bps:.1f} bps ({planned_mark} -> {now}), "
                f"more than {max_price_move_bps} bps"
            )
    if problems:
        raise PreconditionFailed("the plan is stale; re-run plan:\n" + "\n".join(problems))


# -- entry points ----------------------------------------------------------------------------


async def run_apply(
    plan: Plan,
    *,
    client: C,
    desired: D,
    read_snapshot: SnapshotReader[C, D],
    planner: Planner[D] | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    journal_path: Path | None = None,
    now_ms: Callable[[], int] = _now_ms,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS,
    parallelism: int = DEFAULT_PARALLELISM,
    max_passes: int = 3,
    progress: ProgressSink | None = None,
    settle_config: SettleConfig | None = None,
    visibility: VisibilityTracker | None = None,
    lock: AccountLock | None = None,
    durable_journal: bool = True,
) -> ApplyReport:
    """Lock the account, journal, refuse a stale plan, apply. Returns the report.

    `lock` is the account's lock (`reconciler.run.lock.account_lock`), possibly already held by
    the caller; without one, the machine-wide file lock keyed on the user id alone.
    Raises `LockHeld` (exit 6) if another apply holds the account, and
    `PreconditionFailed` (exit 3) with nothing sent if the plan is stale. A run that does not
    converge returns its report; call `report.raise_for_status()` for exit 5.
    `durable_journal=False` is for a rehearsal only (its journal is scratch, see
    `reconciler.apply.journal`): every real apply fsyncs each record.
    """
    async with lock or account_lock(None, base_url="", user_id=plan.user_id):
        journal = (
            Journal(journal_path, clock=now_ms, durable=durable_journal)
            if journal_path is not None
            else Journal.create(
                state_dir / "journal", user_id=plan.user_id, clock=now_ms, durable=durable_journal
            )
        )
        with journal:
            engine = _Engine(
                client=client,
                journal=journal,
                progress=progress,
                parallelism=parallelism,
                settle_config=settle_config,
                visibility=visibility,
                now_ms=now_ms,
            )
            engine.record_start(plan, max_passes=max_passes)
            touched = sorted({action.symbol for action in plan.actions})
            snapshot = await read_snapshot(client, desired, symbols=touched)
            # Writes an earlier run (a watch cycle) had accepted and not yet seen: the read
            # must show them before it can vouch for the plan, else they hold their symbols.
            snapshot = await engine.await_visible(
                snapshot, lambda: read_snapshot(client, desired, symbols=touched)
            )
            try:
                check_fresh(
                    plan,
                    snapshot,
                    now_ms=now_ms(),
                    max_age_ms=max_age_ms,
                    max_price_move_bps=max_price_move_bps,
                )
            except PreconditionFailed as exc:
                journal.write("precondition", ok=False, problems=str(exc).splitlines()[1:])
                journal.write("end", converged=False, exit_code=exc.exit_code, sent=0)
                raise
            journal.write(
                "precondition",
                ok=True,
                problems=[],
                fingerprints={s: snapshot.symbol_fingerprint(s) for s in touched},
            )
            return await engine.run(
                plan,
                desired=desired,
                read_snapshot=read_snapshot,
                planner=planner,
                max_passes=max_passes,
                snapshot=snapshot,
            )


async def apply_plan(
    plan: Plan,
    *,
    client: C,
    desired: D,
    read_snapshot: SnapshotReader[C, D],
    journal: Journal,
    planner: Planner[D] | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    max_passes: int = 3,
    progress: ProgressSink | None = None,
    settle_config: SettleConfig | None = None,
    visibility: VisibilityTracker | None = None,
) -> ApplyReport:
    """Execute `plan`, then re-read and re-plan until converged or out of passes.

    No lock and no freshness check: `run_apply` does those. The planner defaults to
    `reconciler.plan.plan`; tests inject their own.
    """
    engine = _Engine(
        client=client,
        journal=journal,
        progress=progress,
        parallelism=parallelism,
        settle_config=settle_config,
        visibility=visibility,
    )
    engine.record_start(plan, max_passes=max_passes)
    return await engine.run(
        plan, desired=desired, read_snapshot=read_snapshot, planner=planner, max_passes=max_passes
    )


# -- the engine ------------------------------------------------------------------------------


_CALL_OUTCOMES: dict[CallOutcome, Outcome] = {
    CallOutcome.ACCEPTED: "accepted",
    CallOutcome.REJECTED: "rejected",
    CallOutcome.NOT_SENT: "not_sent",
    CallOutcome.UNKNOWN: "unknown",
}


class _Engine(Generic[C]):
    """State of one apply: what was sent, which symbols are stopped, what the account knows."""

    def __init__(
        self,
        *,
        client: C,
        journal: Journal,
        progress: ProgressSink | None,
        parallelism: int,
        settle_config: SettleConfig | None,
        visibility: VisibilityTracker | None = None,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self.client = client
        self.journal = journal
        self.progress: ProgressSink = progress if progress is not None else NullProgress()
        self.parallelism = parallelism
        self.settle_config = settle_config or SettleConfig()
        self.now_ms = now_ms
        # Accepted writes the account's reads do not show yet (see `reconciler.apply.visibility`).
        self.visibility = (
            visibility
            if visibility is not None
            else VisibilityTracker(timeout_s=self.settle_config.visibility_timeout_s)
        )
        # Symbols whose accepted writes stayed invisible: named in the report, never resent.
        self.unseen: dict[str, list[Expectation]] = {}
        self.limiter = anyio.CapacityLimiter(parallelism)
        # Orders this apply knows the origin of: never mistaken for an unknown call's effect.
        self.known_order_ids: set[str] = set()
        # Symbols no later pass may touch: a refusal or an outcome nobody could settle.
        self.excluded: dict[str, str] = {}
        self.passes: list[PassReport] = []
        self.user_id = ""
        self._pass_plan: Plan | None = None
        self._pass_number = 0
        self._results: dict[int, ActionResult] = {}
        self._halted: dict[str, str] = {}
        # Set when a reduction of the pass fails or stays unknown: no later call of the pass
        # that adds risk is sent, on any symbol (the exposure it was to make room for is
        # still there).
        self._gate: str | None = None
        self._next_extra_index = 0  # compensating calls, numbered after the plan's own
        self._start_plan_recorded = False
        # Settlement baselines of the current pass (see `baseline`).
        self._pass_snapshot: Snapshot | None = None
        self._recent_fills: dict[str, frozenset[str]] | None = None
        self._recent_fills_lock = anyio.Lock()
        self._baselines: dict[str, Baseline] = {}

    # ---- journal helpers

    def record_start(self, plan: Plan, *, max_passes: int) -> None:
        """The journal's first record: the plan as given, and how it will be applied."""
        self.journal.write(
            "plan",
            journal_format=JOURNAL_FORMAT,
            pass_number=1,
            user_id=plan.user_id,
            pid=os.getpid(),
            parallelism=self.parallelism,
            max_passes=max_passes,
            plan=plan.model_dump(mode="python"),
        )
        self._start_plan_recorded = True

    def _record_result(self, result: ActionResult, *, final: bool = True) -> ActionResult:
        """Journal a call's result; `final=False` when settlement will decide it."""
        self._results[result.index] = result
        self.journal.write(
            "result",
            pass_number=result.pass_number,
            index=result.index,
            symbol=result.action.symbol,
            kind=result.action.kind,
            outcome=result.outcome,
            status=result.status,
            code=result.code,
            detail=result.detail,
            latency_ms=None if result.latency_ms is None else round(result.latency_ms, 3),
        )
        if final:
            self._announce(result)
        return result

    def _announce(self, result: ActionResult) -> None:
        self.progress(
            ActionFinished(
                pass_number=result.pass_number,
                index=result.index,
                action=result.action,
                outcome=result.outcome,
                detail=result.detail,
                latency_ms=result.latency_ms,
            )
        )

    def _not_sent(self, index: int, action: Action, why: str) -> ActionResult:
        return self._record_result(
            ActionResult(self._pass_number, index, action, "not_sent", detail=why)
        )

    # ---- passes

    async def run(
        self,
        plan: Plan,
        *,
        desired: D,
        read_snapshot: SnapshotReader[C, D],
        planner: Planner[D] | None,
        max_passes: int,
        snapshot: Snapshot | None = None,
    ) -> ApplyReport:
        """The passes; `snapshot` is the account as read just before pass 1, if it was."""
        # The default planner takes the spec's `DesiredState`; tests inject their own.
        plan_of = planner if planner is not None else cast(Planner[D], planner_module.plan)
        self.user_id = plan.user_id
        current = plan
        remaining: tuple[Action, ...] = plan.actions
        converged = False
        problems: list[str] = []
        try:
            for number in range(1, max_passes + 2):
                # The read this pass's plan was made from: run_apply's, then verification's.
                await self.run_pass(current, number, snapshot)
                try:
                    snapshot = await self.await_visible(
                        await read_snapshot(self.client, desired),
                        lambda: read_snapshot(self.client, desired),
                    )
                    fresh = plan_of(desired, snapshot)
                except ReconcilerError as exc:
                    problems.append(f"verification after pass {number} failed: {exc}")
                    self.journal.write("verification", pass_number=number, ok=False, error=str(exc))
                    break
                remaining = fresh.actions
                converged = fresh.is_empty and not self.unseen
                actionable = tuple(a for a in fresh.actions if a.symbol not in self.excluded)
                self.journal.write(
                    "verification",
                    pass_number=number,
                    ok=True,
                    converged=converged,
                    fingerprint=fresh.fingerprint,
                    remaining=[_action_brief(action) for action in fresh.actions],
                    excluded=dict(self.excluded),
                    violations=list(fresh.violations),
                )
                self.progress(Verified(number, len(fresh.actions), converged))
                if converged:
                    break
                if fresh.violations:
                    problems.extend(f"re-plan breaks policy: {v}" for v in fresh.violations)
                    break
                if not actionable or number > max_passes:
                    break
                current = fresh.model_copy(update={"actions": actionable})
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
            report = self._finish(False, remaining, problems, interrupted=True)
            raise ApplyInterrupted(report) from None
        return self._finish(converged, remaining, problems, interrupted=False)

    async def await_visible(
        self, snapshot: Snapshot, reread: Callable[[], Awaitable[Snapshot]]
    ) -> Snapshot:
        """`snapshot`, or a later read, once it shows every write accepted so far.

        A write still unseen when the visibility timeout passes leaves its symbol alone for
        the rest of the run (`excluded`) and keeps the run from converging: the read cannot
        say what the account holds there, and re-planning from it would send the write again.
        """
        snapshot, unseen = await self.visibility.await_snapshot(self.client, snapshot, reread)
        for symbol, expectations in unseen.items():
            names = ", ".join(e.describe() for e in expectations)
            why = (
                f"accepted {names} not visible after {self.visibility.timeout_s:g} s; "
                "nothing was sent again"
            )
            self.unseen[symbol] = expectations
            self.excluded[symbol] = why
        for symbol in [s for s in self.unseen if s not in unseen]:
            del self.unseen[symbol]
            self.excluded.pop(symbol, None)
        return snapshot

    def _finish(
        self,
        converged: bool,
        remaining: tuple[Action, ...],
        problems: list[str],
        *,
        interrupted: bool,
    ) -> ApplyReport:
        if interrupted:
            self._close_pass(interrupted=True)
            self.journal.write("interrupted", pass_number=self._pass_number)
        # What a read that lacks our own writes asks for is no plan: those symbols are listed
        # as left alone (with the ids not seen), not as still planned.
        remaining = tuple(action for action in remaining if action.symbol not in self.unseen)
        report = ApplyReport(
            user_id=self.user_id,
            passes=tuple(self.passes),
            converged=converged and not interrupted,
            interrupted=interrupted,
            remaining=() if converged else remaining,
            excluded=dict(self.excluded),
            problems=tuple(problems),
            journal_path=self.journal.path,
            rate_limited=_refusals(self.client),
        )
        self.journal.write(
            "end",
            converged=report.converged,
            interrupted=interrupted,
            exit_code=report.exit_code,
            passes=len(self.passes),
            counts=report.counts(),
            excluded=dict(self.excluded),
            problems=list(problems),
        )
        self.progress(
            ApplyFinished(report.converged, interrupted, len(self.passes), report.summary())
        )
        return report

    async def run_pass(self, plan: Plan, number: int, snapshot: Snapshot | None = None) -> None:
        """One pass: phases in order, symbols concurrently within a phase, calls in order.

        `snapshot` is the account the pass's plan was made from (read before the pass), if any.
        """
        self._pass_plan, self._pass_number = plan, number
        self._results, self._halted, self._gate = {}, {}, None
        self._next_extra_index = len(plan.actions)
        self._pass_snapshot, self._recent_fills, self._baselines = snapshot, None, {}
        if snapshot is not None:
            self.visibility.note_snapshot(snapshot)
        if number > 1 or not self._start_plan_recorded:
            self.journal.write("plan", pass_number=number, plan=plan.model_dump(mode="python"))
        symbols = tuple(sorted({action.symbol for action in plan.actions}))
        self.progress(PassStarted(number, len(plan.actions), symbols))
        for _group, chains in _by_phase(plan.actions):
            async with anyio.create_task_group() as group:
                for chain in chains:
                    group.start_soon(self._run_chain, chain)
        self._close_pass(interrupted=False)

    def _close_pass(self, *, interrupted: bool) -> None:
        """Record the pass; an interrupted pass's unsent calls are journaled as not sent."""
        plan = self._pass_plan
        if plan is None or any(report.number == self._pass_number for report in self.passes):
            return
        if interrupted:
            for index, action in enumerate(plan.actions):
                if index not in self._results:
                    self._not_sent(index, action, "interrupted before it was sent")
        results = tuple(self._results[index] for index in sorted(self._results))
        self.passes.append(PassReport(self._pass_number, plan, results))

    async def _run_chain(self, chain: list[tuple[int, Action]]) -> None:
        """One symbol's calls of one phase, strictly in order, stopping at the first failure."""
        async with self.limiter:
            previous_accepted = False
            for index, action in chain:
                halted = self._halted.get(action.symbol)
                if halted is None and action.symbol in self.unseen:
                    # An earlier run's accepted write is still not in the reads: the plan
                    # was made without it, so sending would do it twice.
                    halted = self.excluded[action.symbol]
                if halted is None and self._gate is not None and action.risk == "increase":
                    # Held back, and so is the rest of the symbol's pass: a later call of it
                    # (a top-up, a TP/SL) was planned on the state this one would have made.
                    halted = self._halted[action.symbol] = self._gate
                if halted is not None:
                    self._not_sent(index, action, halted)
                    previous_accepted = False
                    continue
                result = await self.execute(index, action)
                if result.outcome == "accepted":
                    previous_accepted = True
                    continue
                self._halted[action.symbol] = (
                    f"stopped: earlier {action.kind} on {action.symbol} was {result.outcome}"
                )
                if action.risk == "reduce" and action.phase <= Phase.REDUCE and not self._gate:
                    self._gate = (
                        f"held back: {action.kind} on {action.symbol} was {result.outcome}, "
                        "so nothing in this pass adds risk"
                    )
                if action.on_failure and previous_accepted:
                    await self._undo(action, result)
                previous_accepted = False

    async def _undo(self, action: Action, failed: ActionResult) -> None:
        """Put back what the call before `action` changed, once `action` certainly failed.

        Only a call proved not executed (refused, settled absent, or never sent) is undone;
        an unknown one may have worked, and an undo on top of it could be the riskier state.
        The undo's calls run in order and stop at the first that is not plainly accepted.
        """
        if failed.outcome not in ("rejected", "settled_not_executed", "not_sent"):
            return
        for intent in action.on_failure:
            undo = Action(
                intent=intent,
                phase=action.phase,
                risk="reduce",
                reason=f"undo, as {action.reason} was {failed.outcome}",
            )
            index = self._next_extra_index
            self._next_extra_index += 1
            if (await self.execute(index, undo)).outcome != "accepted":
                return

    # ---- one call

    async def execute(self, index: int, action: Action) -> ActionResult:
        """Send one planned call exactly as planned and find out what it did."""
        # The last point where Ctrl-C stops this call: the send below is shielded.
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            intent = await self._resolve(action)
        except _CannotSend as exc:
            return self._not_sent(index, action, str(exc))
        baseline: Baseline | None = None
        if needs_baseline(action):
            try:
                baseline = await self.baseline(action)
            except VenueError as exc:
                return self._not_sent(index, action, f"could not read the state first: {exc}")
            except _CannotSend as exc:
                return self._not_sent(index, action, str(exc))
            moved = _moved_since_plan(action, baseline)
            if moved is not None:
                return self._not_sent(index, action, moved)
        # From here the call is in flight: cancellation waits for it and its journal records.
        with anyio.CancelScope(shield=True):
            result = await self._send(index, action, intent, baseline)
        return result

    async def baseline(self, action: Action) -> Baseline:
        """What settlement of `action` compares against, read as seldom as is safe.

        A margin move is judged by its exact change, so its position is read just before it,
        and so is a market order's (`_moved_since_plan` checks it is what the order was sized
        from). Which orders are old needs no read per call: with one call in flight per
        symbol, every order this apply placed since the pass began is in `known_order_ids`
        (accepted answers, settled ones) or has stopped the symbol for the pass. So the pass's
        snapshot (open orders, and the position a limit order's evidence starts from) plus
        one read of the account's recent fills, taken at the pass's first order, serve every
        order of the pass; without a snapshot the symbol is read in full at its first order
        of the pass. An old id missed this way can only show settlement one candidate more
        (a match, or an unexplained order that keeps the outcome unknown), never an executed
        call as absent.
        """
        if action.kind != "place_order":
            return Baseline(position=await self._fresh_position(action.symbol))
        snapshot = self._pass_snapshot
        if snapshot is None:
            cached = self._baselines.get(action.symbol)
            if cached is None:
                cached = await take_baseline(
                    self.client, action, now_ms=self.now_ms(), config=self.settle_config
                )
                self._baselines[action.symbol] = cached
                return cached
            old, position = cached.old_order_ids, cached.position
        else:
            async with self._recent_fills_lock:
                if self._recent_fills is None:
                    self._recent_fills = await recent_fill_order_ids(
                        self.client, now_ms=self.now_ms(), config=self.settle_config
                    )
            old = frozenset(order.id for order in snapshot.orders(action.symbol))
            old |= self._recent_fills.get(action.symbol, frozenset())
            position = snapshot.positions.get(action.symbol)
        if action.intent.is_market:
            position = await self._fresh_position(action.symbol)
        return Baseline(position=position, old_order_ids=old)

    async def _fresh_position(self, symbol: str) -> Position | None:
        """The symbol's position once the read shows this run's accepted writes on it."""
        try:
            return await self.visibility.fresh_position(self.client, symbol)
        except TimeoutError as exc:
            raise _CannotSend(str(exc)) from None

    async def _resolve(self, action: Action) -> Intent:
        """The intent to carry out: the planned one, with the new position's id filled in."""
        if not action.on_new_position:
            return action.intent
        try:
            position = await self._fresh_position(action.symbol)
        except VenueError as exc:
            raise _CannotSend(f"could not read the position id: {exc}") from exc
        if position is None:
            raise _CannotSend(f"no open {action.symbol} position to fill the position id with")
        return with_position(action.intent, position.id)

    async def _send(
        self, index: int, action: Action, intent: Intent, baseline: Baseline | None
    ) -> ActionResult:
        number = self._pass_number
        request = self.client.request_for(intent)
        self.journal.write(
            "intent",
            pass_number=number,
            index=index,
            symbol=action.symbol,
            kind=action.kind,
            phase=action.phase.name.lower(),
            risk=action.risk,
            reason=action.reason,
            notional=action.notional,
            before=action.before,
            after=action.after,
            intent=intent.model_dump(mode="python"),
            request={"method": request.method, "path": request.path, "body": request.body},
            baseline=None if baseline is None else baseline.to_record(),
        )
        self.progress(ActionStarted(number, index, action, request.path))
        sent_at_ms = self.now_ms()
        started = time.perf_counter()
        try:
            answer = await self.client.execute(intent)
        except Exception as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            return await self._failed(
                index, action, intent, request.path, baseline, exc, sent_at_ms, latency_ms
            )
        latency_ms = (time.perf_counter() - started) * 1000
        if isinstance(answer, Order):
            # Orders the venue told us about (placed, closing) are ours, not unknown effects.
            self.known_order_ids.add(answer.id)
        accepted_at_s = self.visibility.clock()
        self.visibility.expect(expectation_for(action, intent, answer, accepted_at_s=accepted_at_s))
        detail = _describe_answer(answer)
        return self._record_result(
            ActionResult(
                number,
                index,
                action,
                "accepted",
                detail=detail,
                path=request.path,
                status=200,
                latency_ms=latency_ms,
            )
        )

    async def _failed(
        self,
        index: int,
        action: Action,
        intent: Intent,
        path: str,
        baseline: Baseline | None,
        exc: Exception,
        sent_at_ms: int,
        latency_ms: float,
    ) -> ActionResult:
        number = self._pass_number
        outcome = _CALL_OUTCOMES[classify(exc)]
        status = exc.status if isinstance(exc, VenueError) else None
        code = exc.code if isinstance(exc, VenueError) else None
        message = str(exc) if isinstance(exc, VenueError) else f"{type(exc).__name__}: {exc}"
        if outcome == "rejected" and not (
            isinstance(intent, CancelOrder) and isinstance(exc, OrderNotOpen)
        ):
            # A cancel refused because the order is no longer open (it filled while the cancel
            # was on its way) left nothing resting, which is what it was for: the symbol is not
            # left alone, and the next pass re-plans from what the fill did.
            self.excluded[action.symbol] = f"{action.kind} refused: {code or message}"
        elif outcome == "not_sent" and not (isinstance(exc, TransportError) and not exc.sent):
            self.excluded[action.symbol] = f"{action.kind} could not be sent: {message}"
        result = self._record_result(
            ActionResult(
                number,
                index,
                action,
                outcome,
                detail=message,
                path=path,
                status=status,
                code=code,
                latency_ms=latency_ms,
            ),
            final=outcome != "unknown",
        )
        if outcome != "unknown":
            return result
        if isinstance(exc, OutcomeUnknown):
            sent_at_ms = min(sent_at_ms, exc.sent_at_ms)
        return await self._settle(result, intent, baseline, sent_at_ms)

    async def _settle(
        self, unknown: ActionResult, intent: Intent, baseline: Baseline | None, sent_at_ms: int
    ) -> ActionResult:
        action = unknown.action
        self.progress(Settling(unknown.pass_number, unknown.index, action))
        settlement = await settle(
            self.client,
            action,
            intent,
            sent_at_ms=sent_at_ms,
            baseline=baseline,
            known_order_ids=self.known_order_ids,
            config=self.settle_config,
            lag_allowance_s=self.visibility.lag_allowance_s(),
            clock_ms=self.now_ms,
        )
        self.known_order_ids |= settlement.order_ids
        for order_id in sorted(settlement.order_ids):
            # Seen once by settlement; later reads must show it too before they are trusted.
            self.visibility.expect(
                Expectation(
                    action.symbol,
                    action.kind,
                    self.visibility.clock(),
                    order_id=order_id,
                    order_resting=True,
                    seen_before=True,
                )
            )
        self.journal.write(
            "settlement",
            pass_number=unknown.pass_number,
            index=unknown.index,
            symbol=action.symbol,
            kind=action.kind,
            outcome=settlement.outcome,
            reads=settlement.reads,
            sent_at_ms=sent_at_ms,
            evidence=settlement.evidence,
        )
        if settlement.executed is None:
            self.excluded[action.symbol] = (
                f"outcome of {action.kind} could not be settled from the account; check it by hand"
            )
        detail = {
            "settled_executed": "the account shows it took effect",
            "settled_not_executed": "the account shows it did not take effect",
            "unknown": "the account does not show whether it took effect",
        }[settlement.outcome]
        result = ActionResult(
            unknown.pass_number,
            unknown.index,
            action,
            settlement.outcome,
            detail=f"{unknown.detail}; {detail}",
            path=unknown.path,
            status=unknown.status,
            code=unknown.code,
            latency_ms=unknown.latency_ms,
            settlement=settlement,
        )
        self._results[unknown.index] = result
        self._announce(result)
        return result


class _CannotSend(Exception):
    """The call could not be made concrete (e.g. no position to take the id of)."""


def _moved_since_plan(action: Action, baseline: Baseline) -> str | None:
    """Why a market order must not go out: its position is no longer what it was sized from.

    A market order's size is the difference between the position the plan saw (`before`) and
    the target. If the position moved in between (liquidated, closed by TP/SL, changed by
    someone else), that size would carry the position past its target, so the order is not
    sent and the next pass re-plans from the account. The baseline is read just before the
    send, with one mutation in flight per symbol, so only an outside change can trip this.
    """
    side, size = action.before.get("side"), action.before.get("size")
    if not action.intent.is_market or side is None:
        return None
    position = baseline.position
    now_side = "flat" if position is None else position.side
    now_size = Decimal(0) if position is None else position.size
    if now_side == side and (side == "flat" or now_size == Decimal(str(size))):
        return None
    return (
        f"position is now {now_side} {now_size}, the order was sized from {side} {size}: "
        "left for the next pass to re-plan"
    )


def _by_phase(
    actions: Iterable[Action],
) -> list[tuple[tuple[Phase, int], list[list[tuple[int, Action]]]]]:
    """Actions grouped by phase and wave (in that order), then by symbol (in plan order)."""
    groups: dict[tuple[Phase, int], dict[str, list[tuple[int, Action]]]] = {}
    for index, action in enumerate(actions):
        key = (action.phase, action.wave)
        groups.setdefault(key, {}).setdefault(action.symbol, []).append((index, action))
    return [(key, list(groups[key].values())) for key in sorted(groups)]


def _action_brief(action: Action) -> dict[str, Any]:
    return {
        "symbol": action.symbol,
        "kind": action.kind,
        "phase": action.phase.name.lower(),
        "reason": action.reason,
    }


def _describe_answer(answer: Answer) -> str:
    match answer:
        case None:
            return "already done (a retry found it settled)"
        case Order():
            return f"order {answer.id} {answer.status}"
        case CancelAllResult():
            return f"cancelled {answer.count} order(s)"
        case Position():
            return f"position {answer.id} updated"
        case _:
            assert_never(answer)


def _refusals(client: object) -> int:
    """The 429s the client met, where it keeps count (a test's fake client may not)."""
    budget = getattr(client, "budget", None)
    return int(getattr(budget, "refusals", 0))
