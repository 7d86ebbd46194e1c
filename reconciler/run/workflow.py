"""The steps every command shares: narrow the desired state, read the account, plan, apply.

Commands stay thin by calling these; tests call them directly against a sandbox. The
multi-account commands (`reconciler.run.accounts`) call the same functions once per account, so
one file and many files go through exactly the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from reconciler.apply.engine import run_apply
from reconciler.apply.events import ProgressSink
from reconciler.apply.proposal import first_difference, for_execution
from reconciler.apply.report import ApplyReport
from reconciler.apply.settle import SettleConfig
from reconciler.apply.visibility import DEFAULT_VISIBILITY_TIMEOUT_S
from reconciler.defaults import (
    DEFAULT_MAX_PASSES,
    DEFAULT_MAX_PLAN_AGE_MS,
    DEFAULT_MAX_PRICE_MOVE_BPS,
)
from reconciler.errors import PolicyViolation, PreconditionFailed, SpecError
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_ahead, read_snapshot
from reconciler.levret.settings import ClientSettings
from reconciler.model.desired import DesiredState, chosen_parallelism
from reconciler.model.desired import fingerprint as desired_fingerprint
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot
from reconciler.plan import plan
from reconciler.run.connection import STATE_DIR
from reconciler.run.lock import AccountLock, LockOptions, account_lock

__all__ = ["ApplyOptions", "apply_account", "narrow", "plan_account", "without_takers"]


def narrow(desired: DesiredState, targets: Sequence[str]) -> DesiredState:
    """Only the `--target` symbols; every other symbol is left alone, whatever the policy."""
    if not targets:
        return desired
    unknown = sorted(set(targets) - set(desired.symbols))
    if unknown:
        raise SpecError(
            [
                f"{desired.filename}: --target {symbol}: not a symbol of this file"
                for symbol in unknown
            ]
        )
    kept = {symbol: entry for symbol, entry in desired.symbols.items() if symbol in targets}
    policy = desired.policy.model_copy(update={"unmanaged": "ignore"})
    return desired.model_copy(update={"symbols": kept, "policy": policy})


def without_takers(desired: DesiredState) -> DesiredState:
    """The file as apply re-plans it after a pass: `taker: true` orders are sent once.

    A taker order fills at once, so it never rests; re-planning with it would send it again
    every pass. Its symbol's other orders are kept (`additive`, so the filled one's absence
    cancels nothing either).
    """
    symbols = dict(desired.symbols)
    for symbol, entry in desired.symbols.items():
        if entry.orders and any(order.taker for order in entry.orders):
            kept = tuple(order for order in entry.orders if not order.taker)
            symbols[symbol] = entry.model_copy(update={"orders": kept, "orders_mode": "additive"})
    if symbols == desired.symbols:
        return desired
    return desired.model_copy(update={"symbols": symbols})


async def _confirm_saved(
    client: LevretClient, desired: DesiredState, saved: Plan, allow_flatten: bool
) -> Plan:
    """The plan made now, if it sends exactly the saved calls; else exit 3 (or 4) unsent."""
    snapshot = await read_snapshot(client, desired)
    fresh = plan(desired, snapshot, allow_flatten=allow_flatten)
    difference = first_difference(saved, fresh, client.request_for)
    if difference is not None:
        weighted = any(
            entry.position is not None and entry.position.weight is not None
            for entry in desired.symbols.values()
        )
        if weighted and snapshot.equity is not None:
            difference += f" (sizes follow weight: the account's equity is now {snapshot.equity:f})"
        raise PreconditionFailed(
            "the saved plan is not what a plan made now would send; nothing was sent, "
            f"re-run plan:\n{difference}"
        )
    if fresh.violations:
        raise PolicyViolation(list(fresh.violations))
    return for_execution(saved, fresh)


def _replanner(allow_flatten: bool) -> Callable[[DesiredState, Snapshot], Plan]:
    """How apply re-plans after a pass: without taker orders, with the same flatten consent."""

    def replan(desired: DesiredState, snapshot: Snapshot) -> Plan:
        return plan(without_takers(desired), snapshot, allow_flatten=allow_flatten)

    return replan


async def plan_account(
    settings: ClientSettings,
    desired: DesiredState,
    *,
    now_ms: int | None = None,
    allow_flatten: bool = False,
) -> Plan:
    """Read what the plan needs and compute it; `now_ms` stamps the plan for staleness checks."""
    async with LevretClient(settings) as client:
        snapshot = await read_snapshot(client, desired)
    result = plan(desired, snapshot, allow_flatten=allow_flatten)
    if now_ms is not None:
        result = result.model_copy(update={"created_at_ms": now_ms})
    return result


@dataclass(frozen=True)
class ApplyOptions:
    """How apply runs: the safety limits on a saved plan, the pace of execution, the lock."""

    max_plan_age_ms: int = DEFAULT_MAX_PLAN_AGE_MS
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS
    parallelism: int | None = None  # None: the file's `apply.parallelism`, else 16
    max_passes: int = DEFAULT_MAX_PASSES
    state_dir: Path = STATE_DIR
    visibility_timeout_s: float | None = None  # None: the file's `apply`, else the default
    lock: LockOptions = field(default_factory=LockOptions)
    allow_flatten: bool = False  # `--allow-flatten`: a plan may close every position


def visibility_timeout_s(desired: DesiredState, options: ApplyOptions) -> float:
    """`--visibility-timeout`, else the file's `apply.visibility_timeout`, else 30 s."""
    if options.visibility_timeout_s is not None:
        return options.visibility_timeout_s
    if desired.apply.visibility_timeout is not None:
        return float(desired.apply.visibility_timeout)
    return DEFAULT_VISIBILITY_TIMEOUT_S


async def apply_account(
    settings: ClientSettings,
    desired: DesiredState,
    planned: Plan,
    *,
    progress: ProgressSink,
    journal: Path | None = None,
    options: ApplyOptions = ApplyOptions(),
    lock: AccountLock | None = None,
    saved: bool = False,
) -> ApplyReport:
    """Execute `planned` on the account (locked, journalled, freshness-checked, verified).

    `lock` is the account's lock if the caller already holds it (it took it before
    planning); otherwise it is taken here, from the file's `lock` and `options.lock`.
    `saved`: the plan was read from a file, so it is only a proposal: it is planned again now
    and executed only if the fresh plan makes the same calls (see `reconciler.apply.proposal`).
    """
    wanted = desired_fingerprint(desired)
    if planned.desired_fingerprint is not None and planned.desired_fingerprint != wanted:
        raise PreconditionFailed(
            f"{desired.filename} asks for something else than when the plan was made "
            "(the file or --target changed); re-run plan"
        )
    if lock is None:
        lock = account_lock(
            desired.lock, options.lock, base_url=settings.base_url, user_id=planned.user_id
        )
    async with LevretClient(settings) as client:
        read_ahead(client, planned)
        if saved:
            planned = await _confirm_saved(client, desired, planned, options.allow_flatten)
        return await run_apply(
            planned,
            client=client,
            desired=desired,
            read_snapshot=read_snapshot,
            planner=_replanner(options.allow_flatten),
            state_dir=options.state_dir,
            journal_path=journal,
            max_age_ms=options.max_plan_age_ms,
            max_price_move_bps=options.max_price_move_bps,
            parallelism=chosen_parallelism(desired, options.parallelism),
            max_passes=options.max_passes,
            progress=progress,
            settle_config=SettleConfig(visibility_timeout_s=visibility_timeout_s(desired, options)),
            lock=lock,
        )
