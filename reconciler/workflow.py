"""The steps every command shares: narrow the desired state, read the account, plan.

Commands stay thin by calling these; tests call them directly against a sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.actions import Plan
from reconciler.errors import SpecError
from reconciler.exchange.client import LevretClient
from reconciler.exchange.settings import ClientSettings
from reconciler.planner import plan
from reconciler.reader import read_snapshot
from reconciler.spec import DesiredState

__all__ = ["narrow", "plan_account"]


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
