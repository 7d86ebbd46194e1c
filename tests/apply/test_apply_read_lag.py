"""Never twice: every golden apply scenario, against a sandbox whose reads lag its writes.

The scenario's account is built and planned with live reads; then the sandbox's private
reads are set to trail the writes by 3 s or 8 s (`read_lag_ms`, a replica of the account as
it was that long ago) and the plan is applied. Apply must wait until the reads show each
write it had accepted before it re-plans or verifies: the request log must hold exactly the
plan's calls, once each, and the account must converge. Before this rule, a lag of a few
seconds made apply send the same opening order again at every pass.

All scenarios of one lag run concurrently, each against its own sandbox server, so the
test takes about twice the lag, not the lag times the number of scenarios.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from wire import wire_call

from reconciler import jsonnum
from reconciler.apply.engine import run_apply
from reconciler.apply.report import ApplyReport
from reconciler.levret.client import LevretClient
from reconciler.levret.reader import read_snapshot
from reconciler.model.desired import DesiredState, load
from reconciler.model.plan import Plan
from reconciler.run.lock import account_lock
from tests.apply.test_apply_scenarios import (
    SCENARIOS,
    USER,
    _now_ms,
    plan_live,
    realise,
    settings_for,
)
from tests.conftest import RunningSandbox, SandboxFactory

SCENARIO_NAMES = sorted(path.name for path in SCENARIOS.iterdir())


def _prepared(
    name: str, sandbox_factory: SandboxFactory
) -> tuple[str, DesiredState, RunningSandbox, Plan] | None:
    folder = SCENARIOS / name
    desired = load(folder / "desired.yaml")
    sandbox = sandbox_factory(seed=False, rate_limit=100_000)
    realise(sandbox.exchange, jsonnum.loads((folder / "live.json").read_bytes()))
    planned = anyio.run(plan_live, sandbox.api_url, desired)
    if planned.violations or not planned.actions:
        return None
    return name, desired, sandbox, planned


async def _apply(
    sandbox: RunningSandbox, desired: DesiredState, planned: Plan, state: Path
) -> ApplyReport:
    async with LevretClient(settings_for(sandbox.api_url)) as client:
        return await run_apply(
            planned.model_copy(update={"created_at_ms": _now_ms()}),
            client=client,
            desired=desired,
            read_snapshot=read_snapshot,
            state_dir=state,
            parallelism=4,
            # Each scenario is its own exchange: its lock is keyed on its own base URL.
            lock=account_lock(None, base_url=sandbox.api_url, user_id=USER),
        )


@pytest.mark.slow
@pytest.mark.parametrize("lag_ms", [3_000, 5_000])  # the duplicates showed from 2.5 s
def test_golden_scenarios_under_read_lag_send_each_call_once_and_converge(
    lag_ms: int, sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    cases = [c for c in (_prepared(n, sandbox_factory) for n in SCENARIO_NAMES) if c]
    assert len(cases) >= 10  # the golden set, less the no-change and policy-refused ones
    for _, _, sandbox, _ in cases:
        sandbox.clear_requests()
        sandbox.set_faults({"read_lag_ms": lag_ms})
    reports: dict[str, ApplyReport] = {}

    async def run_all() -> None:
        async def one(name: str, desired: DesiredState, sandbox: RunningSandbox, p: Plan) -> None:
            reports[name] = await _apply(sandbox, desired, p, tmp_path / name)

        async with anyio.create_task_group() as group:
            for case in cases:
                group.start_soon(one, *case)

    anyio.run(run_all)
    for name, desired, sandbox, planned in cases:
        report = reports[name]
        writes = [e for e in sandbox.requests() if e["method"] == "POST"]
        assert len(writes) == len(planned.actions), (name, report.table())
        assert [e["path"].split("/")[3] for e in writes] == [
            wire_call(a).path.split("/")[1] for a in planned.actions
        ], name
        assert report.converged, (name, report.table())
        sandbox.set_faults({})
        assert anyio.run(plan_live, sandbox.api_url, desired).actions == (), name
        _assert_account_matches(sandbox, desired)


def _assert_account_matches(sandbox: RunningSandbox, desired: DesiredState) -> None:
    """No position beyond its target: the overshoot a duplicated order would leave."""
    held: dict[str, Any] = {p["symbol"]: p for p in sandbox.exchange.positions(USER, None)}
    for symbol, entry in desired.symbols.items():
        wanted = entry.position
        if wanted is None or wanted.size is None:
            continue
        position = held.get(symbol)
        size = Decimal(0) if position is None else Decimal(str(position["size"]))
        target = Decimal(0) if wanted.side == "flat" else wanted.size
        assert size == target, (symbol, size, target)
