"""The planner: `plan(desired, snapshot) -> Plan`, the smallest set of calls that converge.

Pure: no IO, no clock, no randomness. It reads top to bottom as the rules it implements:

1. Tolerance — a difference within the symbol's tolerance is no difference (never across
   sides, never by the minimum size or more; see `Context.within_tolerance`).
2. One size-changing call per symbol — an open, an add, a reduce or a flip is one market
   order; going flat is one `close_position`. A new position gets its leverage and TP/SL in
   the order body, never in extra calls.
3. One call per differing attribute of a position that stays open: leverage, margin (one add
   or reduce of the difference, against the margin *predicted* after the earlier phases) and
   TP/SL (both prices in one call). Nothing but the close on a position that closes.
4. Resting orders — a maximum matching between wanted and live orders keeps every match; the
   rest is cancelled (one `cancel_all_orders` when all of two or more go) or placed.
5. `notional` and `weight` become sizes at the snapshot's mark, rounded *down* to the step.
6. Each action carries its exact request, before/after, notional, risk and a reason.
7. Policy breaches are collected into `Plan.violations` (all of them); `enforce` raises.

Phases order the calls across symbols (see `Phase`). A flip is one order that closes the old
position and opens the new one: it sits in REDUCE when the new size is smaller than the old
(it frees margin, like a reduction) and in INCREASE otherwise.
"""

from __future__ import annotations

from decimal import localcontext

from reconciler.errors import PolicyViolation, SpecError
from reconciler.model.desired import (
    DesiredState,
    check_against_specs,
)
from reconciler.model.desired import fingerprint as desired_fingerprint
from reconciler.model.intents import PlaceOrder
from reconciler.model.plan import Phase, Plan, ReadHint
from reconciler.model.snapshot import Snapshot
from reconciler.plan.crossing import crossing_violations
from reconciler.plan.exposure import Resting
from reconciler.plan.liquidation import maintenance_rate
from reconciler.plan.model import (
    PLANNER_PRECISION,
    TAKER_FEE_RATE,
    Context,
    Holding,
    SymbolPlan,
)
from reconciler.plan.orders import cancel_orders, plan_orders, symbols_placing_orders
from reconciler.plan.policy import flatten_violations, policy_violations
from reconciler.plan.position import close_position, plan_position, resolve_target
from reconciler.plan.prefix import AccountState, Limits, Step, assign_waves, prefix_violations
from reconciler.plan.summary import (
    empty_reason,
    fingerprinted,
    marks_used,
    summarize,
    symbol_change,
)

__all__ = ["TAKER_FEE_RATE", "enforce", "plan", "symbols_placing_orders"]


# -- the plan --------------------------------------------------------------------------------


def plan(desired: DesiredState, snapshot: Snapshot, *, allow_flatten: bool = False) -> Plan:
    """The minimal plan that makes `snapshot` match `desired` (raises SpecError on bad input).

    `allow_flatten` (the CLI's `--allow-flatten`) lifts the refusal of a plan that closes
    every position of the account or more than `policy.max_closes`.
    """
    with localcontext() as wide:
        wide.prec = PLANNER_PRECISION
        return _plan(desired, snapshot, allow_flatten)


def _plan(desired: DesiredState, snapshot: Snapshot, allow_flatten: bool) -> Plan:
    problems = check_against_specs(desired, snapshot.specs)
    if problems:
        raise SpecError(problems)
    context = Context(desired, snapshot, maintenance_rate(snapshot))
    symbol_plans = [plan_symbol(context, symbol) for symbol in _symbols_in_scope(context)]
    sizing_problems = [problem for sp in symbol_plans for problem in sp.problems]
    if sizing_problems:
        raise SpecError(sizing_problems)
    for sp in symbol_plans:
        _leave_alone_if_infeasible(context, sp)
    start, limits = _start_state(context), _limits(context)
    steps = assign_waves(start, _execution_order(symbol_plans), limits)
    actions = [step.action for step in steps]
    after = {sp.symbol: sp.after for sp in symbol_plans}
    violations = policy_violations(context, actions, after)
    violations.extend(
        crossing_violations(desired, snapshot, {sp.symbol: sp.placed for sp in symbol_plans})
    )
    if not allow_flatten:
        violations.extend(flatten_violations(context, actions, after))
    if not violations:  # a plan already refused need not be refused again step by step
        violations.extend(prefix_violations(start, steps, limits))
    return Plan(
        user_id=snapshot.user_id,
        fingerprint=snapshot.fingerprint(),
        desired_fingerprint=desired_fingerprint(desired),
        symbol_fingerprints={
            symbol: snapshot.symbol_fingerprint(symbol)
            for symbol in fingerprinted(context, actions)
        },
        marks=marks_used(context, symbol_plans),
        read_hint=_read_hint(snapshot),
        actions=tuple(actions),
        violations=tuple(violations),
        infeasible=tuple(problem for sp in symbol_plans for problem in sp.infeasible),
        summary=summarize(context, actions, after),
        empty_reason=empty_reason(context) if not actions else None,
        changes=tuple(symbol_change(context, sp) for sp in symbol_plans if sp.actions),
    )


def _read_hint(snapshot: Snapshot) -> ReadHint:
    """What the read held, for apply's first read to ask for at once (`ReadHint`)."""
    return ReadHint(
        open_orders=sum(len(orders) for orders in snapshot.open_orders.values()),
        market_stats=tuple(sorted(snapshot.marks)),
        books=tuple(sorted(snapshot.books)),
    )


def enforce(plan: Plan) -> Plan:
    """Raise `PolicyViolation` (exit 4) if the plan breaks any policy; else return it."""
    if plan.violations:
        raise PolicyViolation(list(plan.violations))
    return plan


def _leave_alone_if_infeasible(context: Context, sp: SymbolPlan) -> None:
    """A symbol whose change cannot be made exactly is reported and left alone, not the plan.

    Below the minimum size or off the step, a market order would be refused by the exchange (or,
    sent rounded, land elsewhere than the file says); the other symbols need not wait.
    """
    spec = context.snapshot.specs.get(sp.symbol)
    if spec is not None:
        for action in sp.actions:
            if not isinstance(action.intent, PlaceOrder):
                continue
            size = action.intent.size
            if size < spec.min_size or size % spec.step_size != 0:
                sp.infeasible.append(
                    f"{sp.symbol}: {action.reason} needs an order of {size:f}, which the "
                    f"exchange cannot take (minimum size {spec.min_size:f}, "
                    f"step {spec.step_size:f})"
                )
    if sp.infeasible:
        live = context.snapshot.positions.get(sp.symbol)
        sp.clear(Holding.from_position(live) if live is not None else None)


def _symbols_in_scope(context: Context) -> list[str]:
    """Managed symbols, plus live unmanaged ones when the policy says to close them."""
    symbols = set(context.desired.symbols)
    if context.desired.policy.unmanaged == "close":
        symbols |= context.snapshot.live_symbols()
    return sorted(symbols)


def _execution_order(symbol_plans: list[SymbolPlan]) -> list[Step]:
    """By phase, then symbol, then the order the symbol's planner produced them in."""
    indexed = [
        (action.phase, sp.symbol, index, Step(action, sp.predicted[index], index in sp.completes))
        for sp in symbol_plans
        for index, action in enumerate(sp.actions)
    ]
    return [entry[3] for entry in sorted(indexed, key=lambda entry: entry[:3])]


def _start_state(context: Context) -> AccountState:
    snapshot = context.snapshot
    return AccountState(
        holdings={s: Holding.from_position(p) for s, p in snapshot.positions.items()},
        resting={
            symbol: {
                order.id: Resting(order.side, order.price, order.remaining, order.reduce_only)
                for order in orders
                if order.price is not None
            }
            for symbol, orders in snapshot.open_orders.items()
        },
    )


def _limits(context: Context) -> Limits:
    """What every prefix is held to: the policy's caps and the protection the file asks."""
    desired = context.desired
    protection = {
        symbol: (entry.position.take_profit, entry.position.stop_loss)
        for symbol, entry in desired.symbols.items()
        if entry.position is not None
        and (entry.position.take_profit is not None or entry.position.stop_loss is not None)
    }
    marks = {s: m for s in context.snapshot.specs if (m := context.snapshot.mark(s)) is not None}
    return Limits(
        marks=marks,
        maintenance_rate=context.maintenance_rate,
        max_gross=desired.policy.max_gross_notional,
        min_distance=desired.policy.min_liquidation_distance,
        protection=protection,
    )


def plan_symbol(context: Context, symbol: str) -> SymbolPlan:
    """Plan one symbol: its position first (rules 1–3, 5), then its resting orders (rule 4)."""
    entry = context.desired.symbols.get(symbol)
    live = context.snapshot.positions.get(symbol)
    current = Holding.from_position(live) if live is not None else None
    result = SymbolPlan(symbol, after=current)
    if entry is None:  # unmanaged, and the policy says close
        if current is not None:
            result.add(close_position(context, symbol, current, "unmanaged symbol"), None)
            result.after = None
        for action in cancel_orders(context, symbol, context.snapshot.orders(symbol)):
            result.add(action, current)  # cancels run before the close
        return result
    if entry.position is not None:
        target = resolve_target(context, symbol, entry.position, result.problems, result.infeasible)
        if target is not None:
            result.after = plan_position(context, symbol, current, target, result)
    if entry.orders is not None:
        orders = plan_orders(
            context,
            symbol,
            entry.orders,
            additive=entry.orders_mode == "additive",
            placed=result.placed,
        )
        for action in orders:
            # Cancels run before any position call, placements after all of them.
            held = current if action.phase == Phase.CANCEL_ORDERS else result.after
            result.add(action, held)
    return result
