"""The steps every command shares: narrow the desired state, read the account, plan, apply.

Commands stay thin by calling these; tests call them directly against a sandbox. The
multi-account commands (`reconciler.accounts`) call the same functions once per account, so
one file and many files go through exactly the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from reconciler.actions import Plan
from reconciler.apply import DEFAULT_MAX_PRICE_MOVE_BPS, ApplyReport, run_apply
from reconciler.connection import STATE_DIR
from reconciler.errors import PreconditionFailed, SpecError
from reconciler.exchange.client import LevretClient
from reconciler.exchange.settings import ClientSettings
from reconciler.lock import AccountLock, LockOptions, account_lock
from reconciler.planner import plan
from reconciler.progress import ProgressSink
from reconciler.reader import read_snapshot
from reconciler.settle import SettleConfig
from reconciler.spec import DesiredState
from reconciler.spec import fingerprint as desired_fingerprint
from reconciler.visibility import DEFAULT_VISIBILITY_TIMEOUT_S

__all__ = ["ApplyOptions", "apply_account", "narrow", "plan_account"]


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


async def plan_account(
    settings: ClientSettings, desired: DesiredState, *, now_ms: int | None = None
) -> Plan:
    """Read what the plan needs and compute it; `now_ms` stamps the plan for staleness checks."""
    async with LevretClient(settings) as client:
        snapshot = await read_snapshot(client, desired)
    result = plan(desired, snapshot)
    if now_ms is not None:
        result = result.model_copy(update={"created_at_ms": now_ms})
    return result


@dataclass(frozen=True)
class ApplyOptions:
    """How apply runs: the safety limits on a saved plan, the pace of execution, the lock."""

    max_plan_age_ms: int = 15 * 60_000
    max_price_move_bps: Decimal = DEFAULT_MAX_PRICE_MOVE_BPS
    parallelism: int = 4
    max_passes: int = 3
    state_dir: Path = STATE_DIR
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
    lock: LockOptions = field(default_factory=LockOptions)


async def apply_account(
    settings: ClientSettings,
    desired: DesiredState,
    planned: Plan,
    *,
    progress: ProgressSink,
    journal: Path | None = None,
    options: ApplyOptions = ApplyOptions(),
    lock: AccountLock | None = None,
) -> ApplyReport:
    """Execute `planned` on the account (locked, journalled, freshness-checked, verified).

    `lock` is the account's lock if the caller already holds it (it took it before
    planning); otherwise it is taken here, from the file's `lock` and `options.lock`.
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
        return await run_apply(
            planned,
            client=client,
            desired=desired,
            read_snapshot=read_snapshot,
            state_dir=options.state_dir,
            journal_path=journal,
            max_age_ms=options.max_plan_age_ms,
            max_price_move_bps=options.max_price_move_bps,
            parallelism=options.parallelism,
            max_passes=options.max_passes,
            progress=progress,
            settle_config=SettleConfig(visibility_timeout_s=options.visibility_timeout_s),
            lock=lock,
        )
