"""Apply: carry out a plan's intents safely, then prove the account converged.

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
4. `Calls.execute` (`reconciler.apply.calls`) — one call: fill in the new position's id,
   take a baseline when the call is unsafe (`Calls.baseline`: an order's from the pass's
   snapshot and one read of recent fills per pass, a margin move's from a read just before
   it), carry out exactly the planned intent through the venue, classify the outcome, and
   settle an unknown outcome from reads (`reconciler.apply.settle`) — never by sending it
   again.

Apply prints nothing: it reports through a `ProgressSink` and the journal. Cancellation
(Ctrl-C) stops scheduling, lets calls already in flight finish and be journaled (sends are
shielded), then raises `ApplyInterrupted` carrying the report.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import anyio

from reconciler import plan as planner_module
from reconciler.apply.calls import Calls
from reconciler.apply.events import ApplyFinished, NullProgress, PassStarted, ProgressSink, Verified
from reconciler.apply.freshness import check_fresh
from reconciler.apply.journal import JOURNAL_FORMAT, Journal
from reconciler.apply.report import ApplyInterrupted, ApplyReport, PassReport
from reconciler.apply.settle import SettleConfig
from reconciler.apply.venue import C, D, Planner, SnapshotReader
from reconciler.apply.visibility import Expectation, VisibilityTracker
from reconciler.defaults import (
    DEFAULT_MAX_PASSES,
    DEFAULT_MAX_PLAN_AGE_MS,
    DEFAULT_MAX_PRICE_MOVE_BPS,
    DEFAULT_PARALLELISM,
)
from reconciler.errors import PreconditionFailed, ReconcilerError
from reconciler.model.plan import Action, Phase, Plan
from reconciler.model.snapshot import Snapshot

__all__ = ["apply_plan", "run_apply"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- entry points ----------------------------------------------------------------------------


async def run_apply(
    plan: Plan,
    *,
    client: C,
    desired: D,
    read_snapshot: SnapshotReader[C, D],
    lock: AbstractAsyncContextManager[object],
    state_dir: Path,
    planner: Planner[D] | None = None,
    journal_path: Path | None = None,
    now_ms: Callable[[], int] = _now_ms,
    max_age_ms: int = DEFAULT_MAX_PLAN_AGE_MS,
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS,
    parallelism: int = DEFAULT_PARALLELISM,
    max_passes: int = DEFAULT_MAX_PASSES,
    progress: ProgressSink | None = None,
    settle_config: SettleConfig | None = None,
    visibility: VisibilityTracker | None = None,
    durable_journal: bool = True,
) -> ApplyReport:
    """Lock the account, journal, refuse a stale plan, apply. Returns the report.

    `lock` is the account's lock (`reconciler.run.lock.account_lock`), taken here for the
    whole apply: the caller chooses it (a file, or a shared server), never the engine.
    `state_dir` holds the journal (under `journal/`) unless `journal_path` names one.
    Raises `LockHeld` (exit 6) if another apply holds the account, and
    `PreconditionFailed` (exit 3) with nothing sent if the plan is stale. A run that does not
    converge returns its report; call `report.raise_for_status()` for exit 5.
    `durable_journal=False` is for a rehearsal only (its journal is scratch, see
    `reconciler.apply.journal`): every real apply fsyncs each record.
    """
    async with lock:
        journal = (
            Journal(journal_path, clock=now_ms, durable=durable_journal)
            if journal_path is not None
            else Journal.create(
                state_dir / "journal", user_id=plan.user_id, clock=now_ms, durable=durable_journal
            )
        )
        with _heap_frozen(), journal:
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
            # The read the plan is checked against (`check_fresh`: positions, orders, marks)
            # and pass 1 runs on; nothing is planned from it, so it needs no book tops.
            snapshot = await read_snapshot(client, desired, symbols=touched, books=False)
            # Writes an earlier run (a watch cycle) had accepted and not yet seen: the read
            # must show them before it can vouch for the plan, else they hold their symbols.
            snapshot = await engine.await_visible(
                snapshot, lambda: read_snapshot(client, desired, symbols=touched, books=False)
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
    now_ms: Callable[[], int] = _now_ms,
    parallelism: int = DEFAULT_PARALLELISM,
    max_passes: int = DEFAULT_MAX_PASSES,
    progress: ProgressSink | None = None,
    settle_config: SettleConfig | None = None,
    visibility: VisibilityTracker | None = None,
) -> ApplyReport:
    """Execute `plan`, then re-read and re-plan until converged or out of passes.

    No lock and no freshness check: `run_apply` does those. The planner defaults to
    `reconciler.plan.plan`; tests inject their own. `now_ms` is the clock every step reads,
    settlement's included.
    """
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
    return await engine.run(
        plan, desired=desired, read_snapshot=read_snapshot, planner=planner, max_passes=max_passes
    )


# -- the engine ------------------------------------------------------------------------------


class _Engine(Calls[C]):
    """One apply's passes: phases as barriers, symbols concurrently, calls of a symbol in order.

    The single call (`Calls`) carries the state the account is known by; the engine adds
    what spans calls: which symbols are halted or held back, the pass reports.
    """

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
        settle_config = settle_config or SettleConfig()
        super().__init__(
            client=client,
            journal=journal,
            progress=progress if progress is not None else NullProgress(),
            settle_config=settle_config,
            # Accepted writes the reads do not show yet (see `reconciler.apply.visibility`).
            visibility=visibility
            if visibility is not None
            else VisibilityTracker(timeout_s=settle_config.visibility_timeout_s),
            now_ms=now_ms,
        )
        self.parallelism = parallelism
        # Symbols whose accepted writes stayed invisible: named in the report, never resent.
        self.unseen: dict[str, list[Expectation]] = {}
        self.limiter = anyio.CapacityLimiter(parallelism)
        self.passes: list[PassReport] = []
        self.user_id = ""
        self._pass_plan: Plan | None = None
        self._halted: dict[str, str] = {}
        # Set when a reduction of the pass fails or stays unknown: no later call of the pass
        # that adds risk is sent, on any symbol (the exposure it was to make room for is
        # still there).
        self._gate: str | None = None
        self._start_plan_recorded = False

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
        with _heap_frozen():
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
                        self.journal.write(
                            "verification", pass_number=number, ok=False, error=str(exc)
                        )
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
        groups = [self._longest_first(chains) for _key, chains in _by_phase(plan.actions)]
        async with anyio.create_task_group() as ahead:
            if snapshot is not None and any(a.kind == "place_order" for a in plan.actions):
                ahead.start_soon(self.prefetch_recent_fills)
            read_for_this: list[str] = []
            for number_in_pass, chains in enumerate(groups):
                following = groups[number_in_pass + 1] if number_in_pass + 1 < len(groups) else []
                read_for_next = self._to_read_ahead(following)

                def read_ahead(symbols: list[str]) -> None:
                    ahead.start_soon(self.read_ahead.read_many, symbols)

                phase_end = _PhaseEnd(chains, read_for_next, read_ahead)
                async with anyio.create_task_group() as group:
                    for chain in chains:
                        group.start_soon(self._run_chain, chain, phase_end)
                self.read_ahead.forget(read_for_this)
                read_for_this = read_for_next
            self.read_ahead.forget(read_for_this)
        self._close_pass(interrupted=False)

    def _to_read_ahead(self, following: list[_Chain]) -> list[str]:
        """The symbols whose position the next phase's first slots read first
        (`reconciler.apply.readahead`). Chains beyond the slots wait for one, so their reads
        would be older: they read for themselves."""
        return [
            action.symbol
            for _index, action in (chain[0] for chain in following[: self.parallelism])
            if self.reads_position_first(action)
        ]

    def _longest_first(self, chains: list[_Chain]) -> list[_Chain]:
        """The order the symbols of a phase take their slots in (the limiter is first come,
        first served): the longest chain first, since a phase ends with its last chain and
        one that starts late waits for a slot on top of its own length. One slot at a time
        takes as long in any order, so there the plan's order is kept."""
        if self.parallelism == 1:
            return chains
        return sorted(chains, key=len, reverse=True)  # stable: ties in the plan's order

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

    async def _run_chain(self, chain: _Chain, phase_end: _PhaseEnd) -> None:
        """One symbol's calls of one phase, strictly in order, stopping at the first failure.

        `phase_end` is told when the chain comes to its last call, and when it has ended."""
        async with self.limiter:
            await self._run_chain_calls(chain, phase_end)
        phase_end.chain_ended(chain[0][1].symbol)

    async def _run_chain_calls(self, chain: _Chain, phase_end: _PhaseEnd) -> None:
        previous_accepted = False
        for position_in_chain, (index, action) in enumerate(chain):
            if position_in_chain == len(chain) - 1:
                phase_end.on_last_call()
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


_frozen_depth = 0


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep what the process holds (its modules, the plan, the snapshot) out of the cycle
    collector's full collections while apply runs: one walks every object and stalls every
    call in flight, or the read before the first call, by 30 ms or more. Objects made
    meanwhile are collected as ever. Nested (`run_apply`, then the passes, which freeze what
    the first read made too), the frozen ones are handed back at the outermost end."""
    global _frozen_depth
    gc.freeze()
    _frozen_depth += 1
    try:
        yield
    finally:
        _frozen_depth -= 1
        if _frozen_depth == 0:
            gc.unfreeze()


_Chain = list[tuple[int, Action]]  # one symbol's calls of a phase: (index in the plan, action)


class _PhaseEnd:
    """Starts the next phase's position reads ahead (`reconciler.apply.readahead`) as this
    phase comes to its end: once every chain of the phase is on its last call, for each
    symbol the phase does not touch; for one it touches, once its own chain has ended too
    (no write of ours lands on it after that read)."""

    def __init__(self, chains: list[_Chain], wanted: list[str], start: Callable[[list[str]], None]):
        self._left = len(chains)
        self._touched = {chain[0][1].symbol for chain in chains}
        self._ended: set[str] = set()
        self._wanted = wanted
        self._start = start  # the symbols that go at once share one read

    def on_last_call(self) -> None:
        self._left -= 1
        if self._left == 0:
            ready = [s for s in self._wanted if s not in self._touched or s in self._ended]
            if ready:
                self._start(ready)

    def chain_ended(self, symbol: str) -> None:
        self._ended.add(symbol)
        if self._left == 0 and symbol in self._wanted:
            self._start([symbol])


def _by_phase(actions: Iterable[Action]) -> list[tuple[tuple[Phase, int], list[_Chain]]]:
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


def _refusals(client: object) -> int:
    """The 429s the client met, where it keeps count (a test's fake client may not)."""
    budget = getattr(client, "budget", None)
    return int(getattr(budget, "refusals", 0))
