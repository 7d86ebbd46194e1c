"""Every prefix of a plan is safe: if apply stops after any call, the account is no worse off.

A plan runs call by call, and any call can be the last one (refused, timed out, a crash).
So the account after every prefix of the plan, in execution order, must be no riskier than
the riskier of the start and the end, on three measures:

1. **Exposure** — the worst-case gross notional (positions plus every resting order that
   could fill, `reconciler.plan.exposure`) never above the larger of the start's and the end's,
   and never above `policy.max_gross_notional` unless the start already was.
2. **Liquidation distance** — no position closer to its liquidation price (percent of the
   mark, `reconciler.plan.liquidation`) than in both the start and the end; and none that the
   plan touches closer than `policy.min_liquidation_distance`, unless it was already closer
   at the start and the plan does not bring it nearer.
3. **Protection** — a position the file wants protected carries its TP/SL in every state
   where the plan has created or grown it.

A margin top-up right after the call that set the margin (an opening order, a leverage
change) completes that call's step: the state between the two is not judged on its own. When
the top-up after a leverage raise is certainly not executed, apply sets the leverage and the
margin back (`Action.on_failure`), so a failure between them leaves the symbol as it started.

Pure: the planner's predicted position after each call in, violations naming the step out.
The planner refuses a plan with any (exit 4); tests call it on plans of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from reconciler.model.intents import CancelAllOrders, CancelOrder
from reconciler.model.plan import Action, Phase
from reconciler.plan.exposure import Resting, resting_of, worst_case_gross
from reconciler.plan.liquidation import distance_percent
from reconciler.plan.model import Holding, money

__all__ = ["AccountState", "Limits", "Step", "assign_waves", "prefix_violations"]

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
        own = dict(self.resting.get(action.symbol, {}))  # only this symbol's orders change
        resting = {**self.resting, action.symbol: own}
        intent = action.intent
        placed = resting_of(intent)
        if isinstance(intent, CancelAllOrders):
            own.clear()
        elif isinstance(intent, CancelOrder):
            own.pop(intent.order_id, None)
        elif placed is not None:
            own[f"planned-{number}"] = placed
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
    after, end = _walk(start, steps)
    problems = _exposure_problems(steps, start, after, end, limits)
    for number, (step, state) in enumerate(zip(steps, after, strict=True), start=1):
        if _completed_by_next(steps, number):
            continue  # judged together with the top-up that follows at once
        # A call changes its own symbol only: the others were judged after their own calls.
        symbol = step.action.symbol
        where = f"step {number} ({symbol} {step.action.reason})"
        problems.extend(_distance_problems(where, state, start, end, symbol, limits))
        problems.extend(_protection_problems(where, state, start, symbol, limits))
    return problems


def assign_waves(start: AccountState, steps: Sequence[Step], limits: Limits) -> list[Step]:
    """The steps with `wave` set, in execution order: phase, wave, then as given.

    Within a phase the symbols run concurrently, so any of them may finish first. A symbol
    whose calls of the phase raise the worst-case exposure (a position grown, an order
    placed) goes to wave 1, after every symbol whose calls lower it (a cancel, a reduction,
    an order that offsets the symbol's resting orders) in wave 0: no interleaving then adds
    a rise before the falls it was planned with.
    """
    after, _ = _walk(start, steps)
    before: dict[str, Decimal] = {}
    rises: dict[tuple[Phase, str], Decimal] = {}
    reached: dict[str, Decimal] = {}
    for step, state in zip(steps, after, strict=True):
        symbol = step.action.symbol
        key = (step.action.phase, symbol)
        if key not in rises:
            before[symbol] = reached.get(symbol, _symbol_gross(start, symbol, limits))
        reached[symbol] = _symbol_gross(state, symbol, limits)
        rises[key] = reached[symbol] - before[symbol]
    waved = []
    for step in steps:
        wave = 1 if rises[(step.action.phase, step.action.symbol)] > 0 else 0
        if wave != step.action.wave:
            step = replace(step, action=step.action.model_copy(update={"wave": wave}))
        waved.append(step)
    return sorted(waved, key=lambda step: (step.action.phase, step.action.wave))


def _walk(start: AccountState, steps: Sequence[Step]) -> tuple[list[AccountState], AccountState]:
    """After each step, its own symbol's state (that symbol alone); and the end state.

    A call changes its own symbol only, so each symbol is carried on its own: a thousand
    calls on five hundred symbols copy a thousand small states, not the whole account.
    """
    current: dict[str, AccountState] = {}
    after: list[AccountState] = []
    for number, step in enumerate(steps, start=1):
        symbol = step.action.symbol
        state = current.get(symbol) or _alone(start, symbol)
        current[symbol] = state.after(step, number)
        after.append(current[symbol])
    holdings = dict(start.holdings)
    resting = dict(start.resting)
    for symbol, state in current.items():
        holdings[symbol] = state.holdings.get(symbol)
        resting[symbol] = state.resting.get(symbol, {})
    return after, AccountState(holdings, resting)


def _alone(state: AccountState, symbol: str) -> AccountState:
    return AccountState(
        {symbol: state.holdings.get(symbol)}, {symbol: state.resting.get(symbol, {})}
    )


def _completed_by_next(steps: Sequence[Step], number: int) -> bool:
    """Is step `number` (1-based) followed at once by the top-up that completes it?"""
    return number < len(steps) and steps[number].completes_previous


def _exposure_problems(
    steps: Sequence[Step],
    start: AccountState,
    after: Sequence[AccountState],
    end: AccountState,
    limits: Limits,
) -> list[str]:
    """Worst-case gross in any interleaving of each group of concurrent calls.

    Calls of one phase and wave run in order within a symbol but concurrently across
    symbols, so the worst state of a group is its start plus, for each symbol, the highest
    rise of that symbol's own calls (any symbol may be the one that got furthest). Kept per
    symbol, so a plan of a thousand calls on five hundred symbols does not re-add every
    symbol after every call.
    """
    by_symbol = {s: _symbol_gross(start, s, limits) for s in _symbols(start)}
    start_gross = sum(by_symbol.values(), Decimal(0))
    end_gross = sum((_symbol_gross(end, s, limits) for s in _symbols(end)), Decimal(0))
    bound = max(start_gross, end_gross)
    gross = start_gross
    problems: list[str] = []
    first = 0
    while first < len(steps):
        group = (steps[first].action.phase, steps[first].action.wave)
        last = first
        while last < len(steps) and (steps[last].action.phase, steps[last].action.wave) == group:
            last += 1
        rises: dict[str, tuple[Decimal, int]] = {}
        reached: dict[str, Decimal] = {}
        for number in range(first + 1, last + 1):
            symbol = steps[number - 1].action.symbol
            reached[symbol] = _symbol_gross(after[number - 1], symbol, limits)
            if _completed_by_next(steps, number):
                continue
            rise = reached[symbol] - by_symbol.get(symbol, Decimal(0))
            if rise > rises.get(symbol, (Decimal(0), 0))[0]:
                rises[symbol] = (rise, number)
        worst = gross + sum((rise for rise, _ in rises.values()), Decimal(0))
        if rises and (worst > bound or _over_cap(worst, start_gross, limits)):
            number = max(rises.values())[1]
            step = steps[number - 1]
            where = f"step {number} ({step.action.symbol} {step.action.reason})"
            if worst > bound:
                problems.append(
                    f"{where}: worst-case gross notional {money(worst):f} would be above both "
                    f"the start's {money(start_gross):f} and the end's {money(end_gross):f}"
                )
            else:
                problems.append(
                    f"{where}: worst-case gross notional {money(worst):f} would exceed "
                    f"policy.max_gross_notional {limits.max_gross:f}"
                )
        for symbol, value in reached.items():
            gross += value - by_symbol.get(symbol, Decimal(0))
            by_symbol[symbol] = value
        first = last
    return problems


def _over_cap(gross: Decimal, start_gross: Decimal, limits: Limits) -> bool:
    cap = limits.max_gross
    return cap is not None and gross > cap and gross > start_gross


def _symbols(state: AccountState) -> set[str]:
    return set(state.holdings) | set(state.resting)


def _symbol_gross(state: AccountState, symbol: str, limits: Limits) -> Decimal:
    """One symbol's worst case: its position plus all buys, or all sells, filling."""
    holding = state.holdings.get(symbol)
    signed = {symbol: holding.signed} if holding is not None else {}
    marks = {symbol: limits.mark(symbol, holding)} if holding is not None else {}
    orders = {symbol: list(state.resting.get(symbol, {}).values())}
    return worst_case_gross(signed, marks, orders)


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
    symbol: str,
    limits: Limits,
) -> Iterable[str]:
    now = _distance(state, symbol, limits)
    if now is None:
        return
    at_start = _distance(start, symbol, limits)
    ends = [d for d in (at_start, _distance(end, symbol, limits)) if d is not None]
    if ends and now < min(ends):
        yield (
            f"{where}: {symbol} would be {now:f}% from its liquidation price, closer "
            f"than at the start and at the end ({min(ends):f}% at the nearer)"
        )
        return
    floor = limits.min_distance
    nearer_than_start = at_start is None or now < at_start
    if floor is not None and now < floor and nearer_than_start:
        yield (
            f"{where}: {symbol} would be {now:f}% from its liquidation price, under "
            f"policy.min_liquidation_distance {floor:f}%"
        )


def _protection_problems(
    where: str, state: AccountState, start: AccountState, symbol: str, limits: Limits
) -> Iterable[str]:
    if symbol not in limits.protection:
        return
    take_profit, stop_loss = limits.protection[symbol]
    holding = state.holdings.get(symbol)
    if holding is None or not _created_or_grown(holding, start.holdings.get(symbol)):
        return
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
