"""Every prefix of a plan is safe: if apply stops after any call, the account is no worse off.

A plan runs call by call, and any call can be the last one (refused, timed out, a crash).
So the account after every prefix of the plan, in execution order, must be no riskier than
the riskier of the start and the end, on three measures:

1. **Exposure** — the worst-case gross notional (positions plus every resting order that
   could fill, `reconciler.exposure`) never above the larger of the start's and the end's,
   and never above `policy.max_gross_notional` unless the start already was.
2. **Liquidation distance** — no position closer to its liquidation price (percent of the
   mark, `reconciler.plan.liquidation`) than in both the start and the end; and none that the
   plan touches closer than `policy.min_liquidation_distance`, unless it was already closer
   at the start and the plan does not bring it nearer.
3. **Protection** — a position the file wants protected carries its TP/SL in every state
   where the plan has created or grown it.

A margin top-up right after the call that set the margin (an opening order, a leverage
change) completes that call's step: the state between the two is not judged on its own. When
the top-up after a leverage change is certainly not executed, apply sets the leverage back
(`Action.on_failure`), so a failure between them leaves the symbol as it started.

Pure: the planner's predicted position after each call in, violations naming the step out.
The planner refuses a plan with any (exit 4); tests call it on plans of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from reconciler.actions import Action
from reconciler.exposure import Resting, worst_case_gross
from reconciler.plan.liquidation import distance_percent
from reconciler.plan.model import Holding, money

__all__ = ["AccountState", "Limits", "Step", "prefix_violations"]

Protection = tuple[Decimal | None, Decimal | None]  # the TP and SL the file sets (None: any)


@dataclass(frozen=True)
class Step:
    """One call in execution order and the position of its symbol predicted after it."""

    action: Action
    holding: Holding | None
    completes_previous: bool = False  # a top-up finishing the call before it


@dataclass(frozen=True)
class AccountState:
    """What the measures read: each symbol's position and its resting orders by id."""

    holdings: Mapping[str, Holding | None]
    resting: Mapping[str, Mapping[str, Resting]] = field(default_factory=dict)

    def after(self, step: Step, number: int) -> AccountState:
        """This state once `step` (the `number`-th call) has run."""
        action = step.action
        holdings = {**self.holdings, action.symbol: step.holding}
        resting = {symbol: dict(orders) for symbol, orders in self.resting.items()}
        body = action.request.body or {}
        own = resting.setdefault(action.symbol, {})
        if action.kind == "cancel_all_orders":
            own.clear()
        elif action.kind == "cancel_order":
            own.pop(str(body.get("orderId")), None)
        elif action.kind == "place_order" and body.get("orderType") == "limit":
            own[f"planned-{number}"] = Resting(
                str(body["side"]),
                Decimal(body["price"]),
                Decimal(body["size"]),
                bool(body.get("reduce_only")),
            )
        return replace(self, holdings=holdings, resting=resting)


@dataclass(frozen=True)
class Limits:
    """What the measures are held to besides the start and the end."""

    marks: Mapping[str, Decimal]
    maintenance_rate: Decimal
    max_gross: Decimal | None = None
    min_distance: Decimal | None = None  # percent of the mark
    protection: Mapping[str, Protection] = field(default_factory=dict)

    def mark(self, symbol: str, holding: Holding) -> Decimal:
        return self.marks.get(symbol) or holding.entry


def prefix_violations(start: AccountState, steps: Sequence[Step], limits: Limits) -> list[str]:
    """Every prefix of `steps` that is riskier than both ends, named by its last call."""
    states = [start]
    for number, step in enumerate(steps, start=1):
        states.append(states[-1].after(step, number))
    end = states[-1]
    start_gross, end_gross = _gross(start, limits), _gross(end, limits)
    touched: set[str] = set()
    problems: list[str] = []
    for number, (step, state) in enumerate(zip(steps, states[1:], strict=True), start=1):
        touched.add(step.action.symbol)
        following = steps[number] if number < len(steps) else None
        if following is not None and following.completes_previous:
            continue  # judged together with the top-up that follows at once
        where = f"step {number} ({step.action.symbol} {step.action.reason})"
        gross = _gross(state, limits)
        if gross > max(start_gross, end_gross):
            problems.append(
                f"{where}: worst-case gross notional {gross:f} would be above both the "
                f"start's {start_gross:f} and the end's {end_gross:f}"
            )
        elif limits.max_gross is not None and gross > limits.max_gross and gross > start_gross:
            problems.append(
                f"{where}: worst-case gross notional {gross:f} would exceed "
                f"policy.max_gross_notional {limits.max_gross:f}"
            )
        problems.extend(_distance_problems(where, state, start, end, touched, limits))
        problems.extend(_protection_problems(where, state, start, limits))
    return problems


def _gross(state: AccountState, limits: Limits) -> Decimal:
    signed = {s: h.signed for s, h in state.holdings.items() if h is not None}
    marks = {s: limits.mark(s, h) for s, h in state.holdings.items() if h is not None}
    orders = {s: list(orders.values()) for s, orders in state.resting.items()}
    return money(worst_case_gross(signed, marks, orders))


def _distance(state: AccountState, symbol: str, limits: Limits) -> Decimal | None:
    """Percent to liquidation; None when there is no position or it can never be liquidated."""
    holding = state.holdings.get(symbol)
    if holding is None:
        return None
    return distance_percent(holding, limits.mark(symbol, holding), limits.maintenance_rate)


def _distance_problems(
    where: str,
    state: AccountState,
    start: AccountState,
    end: AccountState,
    touched: Iterable[str],
    limits: Limits,
) -> Iterable[str]:
    for symbol in sorted(touched):
        now = _distance(state, symbol, limits)
        if now is None:
            continue
        at_start = _distance(start, symbol, limits)
        ends = [d for d in (at_start, _distance(end, symbol, limits)) if d is not None]
        if ends and now < min(ends):
            yield (
                f"{where}: {symbol} would be {now:f}% from its liquidation price, closer "
                f"than at the start and at the end ({min(ends):f}% at the nearer)"
            )
            continue
        floor = limits.min_distance
        nearer_than_start = at_start is None or now < at_start
        if floor is not None and now < floor and nearer_than_start:
            yield (
                f"{where}: {symbol} would be {now:f}% from its liquidation price, under "
                f"policy.min_liquidation_distance {floor:f}%"
            )


def _protection_problems(
    where: str, state: AccountState, start: AccountState, limits: Limits
) -> Iterable[str]:
    for symbol, (take_profit, stop_loss) in sorted(limits.protection.items()):
        holding = state.holdings.get(symbol)
        if holding is None or not _created_or_grown(holding, start.holdings.get(symbol)):
            continue
        for name, wanted, held in (
            ("take_profit", take_profit, holding.take_profit),
            ("stop_loss", stop_loss, holding.stop_loss),
        ):
            if wanted is not None and held != wanted:
                yield (
                    f"{where}: {symbol} would hold a position the plan opened or grew "
                    f"without the file's {name} {wanted:f}"
                )


def _created_or_grown(holding: Holding, before: Holding | None) -> bool:
    return before is None or before.side != holding.side or holding.size > before.size
