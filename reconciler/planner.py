"""The planner: `plan(desired, snapshot) -> Plan`, the smallest set of calls that converge.

Pure: no IO, no clock, no randomness. It reads top to bottom as the rules it implements:

1. Tolerance — a difference within the symbol's tolerance is no difference (never across
   sides, never by `minSize` or more; see `Context.within_tolerance`).
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

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal

from reconciler.actions import (
    POSITION_ID_PLACEHOLDER,
    Action,
    ActionKind,
    Phase,
    Plan,
    PlanSummary,
    PositionView,
    Request,
    Risk,
    SymbolChange,
)
from reconciler.crossing import crossing_violations
from reconciler.errors import PolicyViolation, SpecError
from reconciler.exchange.models import Order, Position
from reconciler.exposure import Resting, resting_side_notional, worst_case_gross
from reconciler.snapshot import Snapshot
from reconciler.spec import (
    DesiredOrder,
    DesiredPosition,
    DesiredState,
    check_against_specs,
)
from reconciler.spec import fingerprint as desired_fingerprint

__all__ = ["TAKER_FEE_RATE", "enforce", "plan"]

TAKER_FEE_RATE = Decimal("0.0005")
MARGIN_QUANTUM = Decimal("0.00000001")
# Digits the planner computes with: a size of 10^15 in steps of 10^-8, valued at a price of
# 10^15, needs about 40; Python's default of 28 would raise instead of answering.
PLANNER_PRECISION = 60

Side = Literal["long", "short"]


# -- the planner's model of a position -----------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """A position as the planner predicts it after each step. `id` may be the placeholder."""

    id: str
    side: Side
    size: Decimal
    entry: Decimal
    leverage: int
    margin: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None

    @property
    def signed(self) -> Decimal:
        return self.size if self.side == "long" else -self.size

    @property
    def requirement(self) -> Decimal:
        """Initial margin the exchange insists on: entry * size / leverage."""
        return _margin(self.entry * self.size / self.leverage)

    @classmethod
    def from_position(cls, position: Position) -> Holding:
        return cls(
            id=position.id,
            side=position.side,
            size=position.size,
            entry=position.entryPrice,
            leverage=position.leverage,
            margin=position.margin,
            take_profit=position.takeProfitPrice,
            stop_loss=position.stopLossPrice,
        )


@dataclass(frozen=True)
class Target:
    """The resolved desired position: a signed size (0 = flat) and its attributes."""

    signed: Decimal
    leverage: int
    margin: Decimal | None
    take_profit: Decimal | None
    stop_loss: Decimal | None
    # Left out of the file: keep what a position that stays open has (a new one has none).
    keep_take_profit: bool = False
    keep_stop_loss: bool = False

    @property
    def side(self) -> Side:
        return "long" if self.signed > 0 else "short"

    @property
    def size(self) -> Decimal:
        return abs(self.signed)


@dataclass
class SymbolPlan:
    """What planning one symbol produced; `after` is the predicted position (None = none)."""

    symbol: str
    actions: list[Action] = field(default_factory=list)
    after: Holding | None = None
    problems: list[str] = field(default_factory=list)
    placed: list[int] = field(default_factory=list)  # indices of the file's orders placed
    infeasible: list[str] = field(default_factory=list)  # why the symbol is left alone


@dataclass(frozen=True)
class Context:
    desired: DesiredState
    snapshot: Snapshot

    @property
    def user_id(self) -> str:
        return self.snapshot.user_id

    def margin_tolerance(self, symbol: str) -> Decimal:
        own = self.desired.symbols.get(symbol)
        if own is not None and own.tolerance is not None and own.tolerance.margin is not None:
            return own.tolerance.margin
        return self.desired.defaults.tolerance.margin

    def within_tolerance(self, symbol: str, current: Holding | None, target: Decimal) -> bool:
        """Is the position `current` close enough to the signed `target` to leave it alone?

        Never across sides (flat counts as a side), never by `minSize` or more; else by the
        symbol's size tolerance in contracts, or its (else the default) notional one in USDT
        at the mark.
        """
        now = current.signed if current is not None else Decimal(0)
        if (now > 0) != (target > 0) or (now < 0) != (target < 0):
            return False
        difference = abs(target - now)
        if difference == 0:
            return True
        spec = self.snapshot.specs.get(symbol)
        if spec is not None and difference >= spec.minSize:
            return False
        own = self.desired.symbols.get(symbol)
        tolerance = own.tolerance if own is not None else None
        if tolerance is not None and tolerance.size is not None:
            return difference <= tolerance.size
        notional = self.desired.defaults.tolerance.notional
        if tolerance is not None and tolerance.notional is not None:
            notional = tolerance.notional
        mark = self.snapshot.mark(symbol) or (current.entry if current is not None else None)
        return mark is not None and difference * mark <= notional


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
    context = Context(desired, snapshot)
    symbol_plans = [plan_symbol(context, symbol) for symbol in _symbols_in_scope(context)]
    sizing_problems = [problem for sp in symbol_plans for problem in sp.problems]
    if sizing_problems:
        raise SpecError(sizing_problems)
    for sp in symbol_plans:
        _leave_alone_if_infeasible(context, sp)
    actions = _execution_order(symbol_plans)
    after = {sp.symbol: sp.after for sp in symbol_plans}
    violations = policy_violations(context, actions, after)
    violations.extend(
        crossing_violations(desired, snapshot, {sp.symbol: sp.placed for sp in symbol_plans})
    )
    if not allow_flatten:
        violations.extend(_flatten_violations(context, actions, after))
    return Plan(
        user_id=snapshot.user_id,
        fingerprint=snapshot.fingerprint(),
        desired_fingerprint=desired_fingerprint(desired),
        symbol_fingerprints={
            symbol: snapshot.symbol_fingerprint(symbol)
            for symbol in _fingerprinted(context, actions)
        },
        marks=_marks_used(context, symbol_plans),
        actions=tuple(actions),
        violations=tuple(violations),
        infeasible=tuple(problem for sp in symbol_plans for problem in sp.infeasible),
        summary=_summary(context, actions, after),
        empty_reason=_empty_reason(context) if not actions else None,
        changes=tuple(_change(context, sp) for sp in symbol_plans if sp.actions),
    )


def enforce(plan: Plan) -> Plan:
    """Raise `PolicyViolation` (exit 4) if the plan breaks any policy; else return it."""
    if plan.violations:
        raise PolicyViolation(list(plan.violations))
    return plan


def _leave_alone_if_infeasible(context: Context, sp: SymbolPlan) -> None:
    """A symbol whose change cannot be made exactly is reported and left alone, not the plan.

    Below `minSize` or off the step, a market order would be refused by the exchange (or,
    sent rounded, land elsewhere than the file says); the other symbols need not wait.
    """
    spec = context.snapshot.specs.get(sp.symbol)
    if spec is not None:
        for action in sp.actions:
            size = (action.request.body or {}).get("size")
            if action.kind != "place_order" or not isinstance(size, Decimal):
                continue
            if size < spec.minSize or size % spec.stepSize != 0:
                sp.infeasible.append(
                    f"{sp.symbol}: {action.reason} needs an order of {size:f}, which the "
                    f"exchange cannot take (minSize {spec.minSize:f}, step {spec.stepSize:f})"
                )
    if sp.infeasible:
        live = context.snapshot.positions.get(sp.symbol)
        sp.actions, sp.placed = [], []
        sp.after = Holding.from_position(live) if live is not None else None


def _symbols_in_scope(context: Context) -> list[str]:
    """Managed symbols, plus live unmanaged ones when the policy says to close them."""
    symbols = set(context.desired.symbols)
    if context.desired.policy.unmanaged == "close":
        symbols |= context.snapshot.live_symbols()
    return sorted(symbols)


def _execution_order(symbol_plans: list[SymbolPlan]) -> list[Action]:
    """By phase, then symbol, then the order the symbol's planner produced them in."""
    indexed = [
        (action.phase, sp.symbol, index, action)
        for sp in symbol_plans
        for index, action in enumerate(sp.actions)
    ]
    return [entry[3] for entry in sorted(indexed, key=lambda entry: entry[:3])]


def plan_symbol(context: Context, symbol: str) -> SymbolPlan:
    """Plan one symbol: its position first (rules 1–3, 5), then its resting orders (rule 4)."""
    entry = context.desired.symbols.get(symbol)
    live = context.snapshot.positions.get(symbol)
    current = Holding.from_position(live) if live is not None else None
    result = SymbolPlan(symbol, after=current)
    if entry is None:  # unmanaged, and the policy says close
        if current is not None:
            result.actions.append(close_position(context, symbol, current, "unmanaged symbol"))
            result.after = None
        result.actions.extend(cancel_orders(context, symbol, context.snapshot.orders(symbol)))
        return result
    if entry.position is not None:
        target = resolve_target(context, symbol, entry.position, result.problems, result.infeasible)
        if target is not None:
            result.after = plan_position(context, symbol, current, target, result.actions)
    if entry.orders is not None:
        result.actions.extend(
            plan_orders(
                context,
                symbol,
                entry.orders,
                additive=entry.orders_mode == "additive",
                placed=result.placed,
            )
        )
    return result


# -- rule 5: what size is wanted ---------------------------------------------------------


def resolve_target(
    context: Context,
    symbol: str,
    wanted: DesiredPosition,
    problems: list[str],
    infeasible: list[str],
) -> Target | None:
    """Turn the desired position into a signed size; notional and weight round *down*."""
    desired = context.desired
    leverage = desired.position_leverage(symbol)
    if wanted.side == "flat":
        return Target(Decimal(0), leverage, None, None, None)
    spec = context.snapshot.specs[symbol]
    path = ("symbols", symbol, "position")
    size = wanted.size
    if size is None:
        mark = context.snapshot.mark(symbol)
        if mark is None or mark <= 0:
            problems.append(desired.problem(path, "no mark price in the snapshot to size it"))
            return None
        if wanted.notional is not None:
            amount, field_name = wanted.notional, "notional"
        else:
            equity = context.snapshot.equity
            if equity is None or wanted.weight is None:
                problems.append(desired.problem(path, "no account equity in the snapshot"))
                return None
            amount, field_name = wanted.weight * equity, "weight"
        size = round_down(amount / mark, spec.stepSize)
        if size < spec.minSize:
            infeasible.append(
                desired.problem(
                    (*path, field_name),
                    f"{amount:f} USDT at mark {mark:f} is {size:f}, below minSize {spec.minSize:f}",
                )
            )
            return None
    signed = size if wanted.side == "long" else -size
    given = wanted.model_fields_set
    return Target(
        signed,
        leverage,
        wanted.margin,
        wanted.take_profit,
        wanted.stop_loss,
        keep_take_profit="take_profit" not in given,
        keep_stop_loss="stop_loss" not in given,
    )


def round_down(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


# -- rules 1–3: the position -------------------------------------------------------------


def plan_position(
    context: Context, symbol: str, current: Holding | None, target: Target, out: list[Action]
) -> Holding | None:
    """Append the position's actions to `out`; return the predicted position afterwards."""
    within = context.within_tolerance(symbol, current, target.signed)
    if target.signed == 0:
        if current is None or within:
            return current
        out.append(close_position(context, symbol, current, "desired flat"))
        return None
    flips = current is not None and current.side != target.side
    if current is None or flips:  # another side is never within tolerance
        holding = open_position(context, symbol, current, target, out)
    else:
        holding = set_leverage(context, symbol, current, target, out)
        if not within:
            holding = resize(context, symbol, holding, target, out)
    holding = adjust_margin(context, symbol, holding, target, out)
    return set_tpsl(context, symbol, holding, target, out)


def open_position(
    context: Context, symbol: str, current: Holding | None, target: Target, out: list[Action]
) -> Holding:
    """One market order opens the position (or flips through zero) with leverage and TP/SL."""
    mark = _mark(context, symbol)
    old = current.size if current is not None else Decimal(0)
    size = old + target.size
    grows = target.size >= old
    phase = Phase.INCREASE if grows else Phase.REDUCE
    risk: Risk = "increase" if grows else "reduce"
    reason = f"open {target.side} {target.size:f} at {target.leverage}x"
    if current is not None:
        reason = f"flip {current.side} {current.size:f} to {target.side} {target.size:f}"
    out.append(
        _order_action(
            context,
            symbol,
            side="buy" if target.signed > 0 else "sell",
            size=size,
            leverage=target.leverage,
            reduce_only=False,
            take_profit=target.take_profit,
            stop_loss=target.stop_loss,
            phase=phase,
            risk=risk,
            reason=reason,
            before=_position_view(current),
            after={"side": target.side, "size": target.size},
            notional=size * mark,
        )
    )
    return Holding(
        id=POSITION_ID_PLACEHOLDER,
        side=target.side,
        size=target.size,
        entry=mark,
        leverage=target.leverage,
        margin=_margin(mark * target.size / target.leverage),
        take_profit=target.take_profit,
        stop_loss=target.stop_loss,
    )


def set_leverage(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One call when the leverage differs; the exchange resets margin to entry*size/leverage."""
    if holding.leverage == target.leverage:
        return holding
    after = replace(holding, leverage=target.leverage)
    after = replace(after, margin=after.requirement)
    out.append(
        _action(
            "set_leverage",
            symbol,
            Phase.LEVERAGE,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/leverage",
                body={"leverage": target.leverage},
            ),
            before={"leverage": holding.leverage, "margin": holding.margin},
            after={"leverage": after.leverage, "margin": after.margin},
            risk="increase" if target.leverage > holding.leverage else "reduce",
            reason=f"leverage {holding.leverage}x -> {target.leverage}x",
        )
    )
    return after


def resize(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One market order toward the target on the same side: add at mark, or reduce pro rata."""
    mark = _mark(context, symbol)
    delta = target.size - holding.size
    grows = delta > 0
    size = abs(delta)
    if grows:
        entry = (holding.entry * holding.size + mark * size) / target.size
        margin = holding.margin + _margin(mark * size / holding.leverage)
    else:
        entry = holding.entry
        margin = _margin(holding.margin * target.size / holding.size)
    out.append(
        _order_action(
            context,
            symbol,
            side=("buy" if holding.side == "long" else "sell")
            if grows
            else ("sell" if holding.side == "long" else "buy"),
            size=size,
            leverage=holding.leverage,
            reduce_only=not grows,
            take_profit=None,
            stop_loss=None,
            phase=Phase.INCREASE if grows else Phase.REDUCE,
            risk="increase" if grows else "reduce",
            reason=f"{'increase' if grows else 'reduce'} {holding.side} "
            f"{holding.size:f} -> {target.size:f}",
            before=_position_view(holding),
            after={"side": holding.side, "size": target.size},
            notional=size * mark,
        )
    )
    return replace(holding, size=target.size, entry=entry, margin=margin)


def adjust_margin(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One add or reduce of the difference between the predicted and the wanted margin."""
    if target.margin is None:
        return holding
    difference = target.margin - holding.margin
    if abs(difference) <= context.margin_tolerance(symbol):
        return holding
    mode = "add" if difference > 0 else "reduce"
    amount = _margin(abs(difference))
    out.append(
        _action(
            "adjust_margin",
            symbol,
            Phase.MARGIN,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/margin",
                body={"mode": mode, "amount": amount},
            ),
            before={"margin": holding.margin},
            after={"margin": target.margin},
            risk="reduce" if mode == "add" else "increase",
            reason=f"{mode} margin {amount:f}",
        )
    )
    return replace(holding, margin=target.margin)


def set_tpsl(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """Both prices in one call when either differs; left out of the file means kept as is."""
    target = replace(
        target,
        take_profit=holding.take_profit if target.keep_take_profit else target.take_profit,
        stop_loss=holding.stop_loss if target.keep_stop_loss else target.stop_loss,
    )
    if (holding.take_profit, holding.stop_loss) == (target.take_profit, target.stop_loss):
        return holding
    out.append(
        _action(
            "set_tpsl",
            symbol,
            Phase.TPSL,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/tpsl",
                body={"takeProfitPrice": target.take_profit, "stopLossPrice": target.stop_loss},
            ),
            before={"take_profit": holding.take_profit, "stop_loss": holding.stop_loss},
            after={"take_profit": target.take_profit, "stop_loss": target.stop_loss},
            reason=_tpsl_reason(target),
        )
    )
    return replace(holding, take_profit=target.take_profit, stop_loss=target.stop_loss)


def _tpsl_reason(target: Target) -> str:
    if target.take_profit is None and target.stop_loss is None:
        return "clear TP/SL"
    tp = f"{target.take_profit:f}" if target.take_profit is not None else "none"
    sl = f"{target.stop_loss:f}" if target.stop_loss is not None else "none"
    return f"TP {tp} / SL {sl}"


def close_position(context: Context, symbol: str, holding: Holding, why: str) -> Action:
    """Going flat is one market close of the whole position."""
    mark = _mark(context, symbol)
    return _action(
        "close_position",
        symbol,
        Phase.REDUCE,
        Request(method="POST", path=f"/positions/{holding.id}/close"),
        before=_position_view(holding),
        after=_position_view(None),
        notional=holding.size * mark,
        risk="reduce",
        reason=f"close {holding.side} {holding.size:f} ({why})",
    )


# -- rule 4: resting orders -----------------------------------------------------------------

OrderKey = tuple[
    str, str, Decimal | None, Decimal, bool, int | None, Decimal | None, Decimal | None
]


def live_order_key(order: Order) -> OrderKey | None:
    """What makes a live order equal to a wanted one, its own TP/SL included."""
    leverage = None if order.reduce_only else order.leverage
    return (
        order.side,
        order.orderType,
        order.price,
        order.remaining,
        order.reduce_only,
        leverage,
        order.takeProfit,
        order.stopLoss,
    )


def wanted_order_key(desired: DesiredState, symbol: str, order: DesiredOrder) -> OrderKey:
    leverage = None if order.reduce_only else desired.order_leverage(symbol, order)
    return (
        order.side,
        "limit",
        order.price,
        order.size,
        order.reduce_only,
        leverage,
        order.take_profit,
        order.stop_loss,
    )


def match_orders(
    desired: DesiredState, symbol: str, wanted: tuple[DesiredOrder, ...], live: tuple[Order, ...]
) -> tuple[list[Order], list[int], list[Order]]:
    """Maximum matching of wanted to live orders: (kept, indices to place, unmatched live).

    Matching is equality of keys, so greedy per key is maximum. The oldest live orders are
    kept first: they hold the best queue position.
    """
    pool: dict[OrderKey, list[Order]] = {}
    for order in sorted(live, key=lambda order: (order.createdAt, order.id)):
        key = live_order_key(order)
        if key is not None:
            pool.setdefault(key, []).append(order)
    kept: list[Order] = []
    to_place: list[int] = []
    for index, want in enumerate(wanted):
        candidates = pool.get(wanted_order_key(desired, symbol, want))
        if candidates:
            kept.append(candidates.pop(0))
        else:
            to_place.append(index)
    kept_ids = {order.id for order in kept}
    unmatched = [order for order in live if order.id not in kept_ids]
    return kept, to_place, unmatched


def symbols_placing_orders(desired: DesiredState, snapshot: Snapshot) -> frozenset[str]:
    """Managed symbols where the plan will place at least one resting order (no mark needed).

    The reader asks this after reading the orders, to read a mark and the book top only
    where an order is going to be sent.
    """
    placing = set()
    for symbol, entry in desired.symbols.items():
        if entry.orders:
            _, to_place, _ = match_orders(desired, symbol, entry.orders, snapshot.orders(symbol))
            if to_place:
                placing.add(symbol)
    return frozenset(placing)


def plan_orders(
    context: Context,
    symbol: str,
    wanted: tuple[DesiredOrder, ...],
    *,
    additive: bool,
    placed: list[int],
) -> list[Action]:
    live = context.snapshot.orders(symbol)
    _, to_place, unmatched = match_orders(context.desired, symbol, wanted, live)
    actions = [] if additive else cancel_orders(context, symbol, tuple(unmatched))
    actions.extend(place_limit(context, symbol, wanted[index]) for index in to_place)
    placed.extend(to_place)
    return actions


def cancel_orders(context: Context, symbol: str, doomed: tuple[Order, ...]) -> list[Action]:
    """Cancel these live orders: one cancelAll when they are all of the symbol's, and >= 2."""
    if not doomed:
        return []
    every = {order.id for order in context.snapshot.orders(symbol)}
    if len(doomed) >= 2 and {order.id for order in doomed} == every:
        reduce_only = [order for order in doomed if order.reduce_only]
        risk: Risk = "reduce" if not reduce_only else "neutral"
        return [
            _action(
                "cancel_all_orders",
                symbol,
                Phase.CANCEL_ORDERS,
                Request(
                    method="POST",
                    path="/order/cancelAll",
                    body={"userId": context.user_id, "symbol": symbol},
                ),
                before={"orders": len(doomed), "ids": sorted(order.id for order in doomed)},
                after={"orders": 0},
                risk=risk,
                reason=f"cancel all {len(doomed)} open orders",
            )
        ]
    return [
        _action(
            "cancel_order",
            symbol,
            Phase.CANCEL_ORDERS,
            Request(method="POST", path="/order/cancel", body={"orderId": order.id}),
            before=_order_view(order),
            after={},
            notional=(order.price or Decimal(0)) * order.remaining,
            risk="increase" if order.reduce_only else "reduce",
            reason=f"cancel {order.side} {order.remaining:f} @ {_price_text(order.price)}",
        )
        for order in sorted(doomed, key=lambda order: (order.createdAt, order.id))
    ]


def place_limit(context: Context, symbol: str, order: DesiredOrder) -> Action:
    leverage = context.desired.order_leverage(symbol, order)
    body: dict[str, Any] = {
        "userId": context.user_id,
        "symbol": symbol,
        "side": order.side,
        "orderType": "limit",
        "size": order.size,
        "price": order.price,
        "leverage": leverage,
        "reduce_only": order.reduce_only,
    }
    if order.take_profit is not None:
        body["takeProfit"] = order.take_profit
    if order.stop_loss is not None:
        body["stopLoss"] = order.stop_loss
    return _action(
        "place_order",
        symbol,
        Phase.PLACE_ORDERS,
        Request(method="POST", path="/order", body=body),
        before={},
        after={
            "side": order.side,
            "price": order.price,
            "size": order.size,
            "leverage": leverage,
            "reduce_only": order.reduce_only,
        },
        notional=order.price * order.size,
        risk="reduce" if order.reduce_only else "increase",
        reason=f"place {order.side} {order.size:f} @ {order.price:f}"
        + (" reduce-only" if order.reduce_only else ""),
    )


# -- rule 6: every action in full -----------------------------------------------------------


def _order_action(
    context: Context,
    symbol: str,
    *,
    side: str,
    size: Decimal,
    leverage: int,
    reduce_only: bool,
    take_profit: Decimal | None,
    stop_loss: Decimal | None,
    phase: Phase,
    risk: Risk,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    notional: Decimal,
) -> Action:
    """A market order with the API's own field names; market orders carry no price."""
    body: dict[str, Any] = {
        "userId": context.user_id,
        "symbol": symbol,
        "side": side,
        "orderType": "market",
        "size": size,
        "leverage": leverage,
        "reduce_only": reduce_only,
    }
    if take_profit is not None:
        body["takeProfit"] = take_profit
    if stop_loss is not None:
        body["stopLoss"] = stop_loss
    return _action(
        "place_order",
        symbol,
        phase,
        Request(method="POST", path="/order", body=body),
        before=before,
        after=after,
        notional=notional,
        risk=risk,
        reason=reason,
    )


def _action(
    kind: ActionKind,
    symbol: str,
    phase: Phase,
    request: Request,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str,
    notional: Decimal = Decimal(0),
    risk: Risk = "neutral",
) -> Action:
    return Action(
        kind=kind,
        symbol=symbol,
        phase=phase,
        request=request,
        before=before,
        after=after,
        notional=_margin(notional),
        risk=risk,
        reason=reason,
    )


def _position_view(holding: Holding | None) -> dict[str, Any]:
    if holding is None:
        return {"side": "flat", "size": Decimal(0)}
    return {"side": holding.side, "size": holding.size}


def _order_view(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "side": order.side,
        "orderType": order.orderType,
        "price": order.price,
        "size": order.remaining,
        "reduce_only": order.reduce_only,
    }


def _price_text(price: Decimal | None) -> str:
    return "market" if price is None else f"{price:f}"


def _mark(context: Context, symbol: str) -> Decimal:
    mark = context.snapshot.mark(symbol)
    if mark is None:
        # The reader must supply a mark for every symbol `needs()` names; a position has one.
        raise SpecError([f"{symbol}: no mark price in the snapshot"])
    return mark


def _margin(value: Decimal) -> Decimal:
    """Money to 8 decimal places: what the planner predicts and what it asks to move."""
    rounded = value.quantize(MARGIN_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    exponent = rounded.as_tuple().exponent
    return rounded.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else rounded


# -- rule 7: policy -----------------------------------------------------------------------------


def policy_violations(
    context: Context, actions: list[Action], after: dict[str, Holding | None]
) -> list[str]:
    """Every policy breach of the plan, and every call the exchange would surely refuse."""
    desired = context.desired
    policy = desired.policy
    violations: list[str] = []
    if policy.allowed_symbols is not None:
        allowed = set(policy.allowed_symbols)
        violations.extend(
            f"{symbol}: not in policy.allowed_symbols"
            for symbol in desired.symbols
            if symbol not in allowed
        )
    for action in actions:
        violations.extend(_action_violations(context, action))
    violations.extend(_protected_violations(context, actions))
    if policy.max_gross_notional is not None:
        live = {s: _live_holding(context, s) for s in context.snapshot.positions}
        before = _worst_gross(context, live, _resting_before(context))
        gross = _worst_gross(
            context, _resulting_holdings(context, after), _resting_after(context, actions)
        )
        if gross > policy.max_gross_notional and gross > before:
            violations.append(
                f"worst-case gross notional after the plan {gross:f} (positions plus every "
                f"resting order that could fill) exceeds policy.max_gross_notional "
                f"{policy.max_gross_notional:f}"
            )
    if policy.max_order_notional is not None:
        violations.extend(_resting_cap_violations(context, actions, policy.max_order_notional))
    for symbol, holding in after.items():
        violations.extend(_feasibility_violations(context, symbol, holding, actions))
    return violations


def _action_violations(context: Context, action: Action) -> Iterator[str]:
    policy = context.desired.policy
    body = action.request.body or {}
    if action.symbol not in context.desired.symbols and policy.unmanaged == "ignore":
        yield f"{action.symbol}: unmanaged symbol would be touched ({action.kind})"
    leverage = body.get("leverage")
    reduce_only = bool(body.get("reduce_only"))
    if (
        policy.max_leverage is not None
        and isinstance(leverage, int)
        and leverage > policy.max_leverage
        and not reduce_only
    ):
        yield (
            f"{action.symbol}: leverage {leverage} exceeds "
            f"policy.max_leverage {policy.max_leverage}"
        )
    if (
        policy.max_order_notional is not None
        and action.kind == "place_order"
        and not reduce_only
        and action.notional > policy.max_order_notional
    ):
        yield (
            f"{action.symbol}: order notional {action.notional:f} exceeds "
            f"policy.max_order_notional {policy.max_order_notional:f} ({action.reason})"
        )
    spec = context.snapshot.specs.get(action.symbol)
    size = body.get("size")
    if spec is not None and isinstance(size, Decimal) and size < spec.minSize:
        yield f"{action.symbol}: order size {size:f} is below minSize {spec.minSize:f}"


def _protected_violations(context: Context, actions: list[Action]) -> Iterator[str]:
    """`protect: true` forbids any call that reduces or closes the position (flips included)."""
    for action in actions:
        entry = context.desired.symbols.get(action.symbol)
        if entry is None or not entry.protect:
            continue
        closes = action.kind == "close_position"
        reduces = action.kind == "place_order" and reduces_position(action)
        if closes or reduces:
            yield f"{action.symbol}: position is protected; refusing to {action.reason}"


def reduces_position(action: Action) -> bool:
    """Does this market order or close shrink or flip the position it acts on?"""
    if action.kind == "close_position":
        return True
    before_side = action.before.get("side")
    if action.kind != "place_order" or before_side in (None, "flat"):
        return False
    return bool(
        action.after.get("side") != before_side
        or Decimal(action.after.get("size", 0)) < Decimal(action.before.get("size", 0))
    )


def _feasibility_violations(
    context: Context, symbol: str, holding: Holding | None, actions: list[Action]
) -> Iterator[str]:
    """What the exchange would refuse or undo, so the plan could never converge.

    Margin below the initial requirement is refused; a reduce-only order with nothing to
    reduce is refused when placed and cancelled by the exchange when resting.
    """
    entry = context.desired.symbols.get(symbol)
    wanted_margin = entry is not None and entry.position is not None and entry.position.margin
    if holding is not None and wanted_margin and holding.margin < holding.requirement:
        yield (
            f"{symbol}: margin {holding.margin:f} is below the initial requirement "
            f"{holding.requirement:f} at {holding.leverage}x"
        )
    for order in (entry.orders or ()) if entry is not None else ():
        if order.reduce_only and not _reduces(holding, order.side):
            yield (
                f"{symbol}: reduce-only {order.side} {order.size:f} @ {order.price:f} "
                "has no opposite position to reduce after the plan"
            )


def _flatten_violations(
    context: Context, actions: list[Action], after: dict[str, Holding | None]
) -> Iterator[str]:
    """No plan closes the whole account, or more than `policy.max_closes`, without consent."""
    closes = sorted(action.symbol for action in actions if action.kind == "close_position")
    if not closes:
        return
    live = len(context.snapshot.positions)
    remaining = sum(1 for holding in _resulting_holdings(context, after).values() if holding)
    hint = "give --allow-flatten to allow it"
    if remaining == 0:
        yield (
            f"the plan closes every position of the account ({live}: {', '.join(closes)}); " + hint
        )
    cap = context.desired.policy.max_closes
    if cap is not None and len(closes) > cap:
        yield f"the plan closes {len(closes)} positions, more than policy.max_closes {cap}; " + hint


def _reduces(holding: Holding | None, side: str) -> bool:
    if holding is None:
        return False
    return (holding.side == "long" and side == "sell") or (
        holding.side == "short" and side == "buy"
    )


def _live_holding(context: Context, symbol: str) -> Holding | None:
    position = context.snapshot.positions.get(symbol)
    return Holding.from_position(position) if position is not None else None


def _resulting_holdings(
    context: Context, after: dict[str, Holding | None]
) -> dict[str, Holding | None]:
    """Every symbol's predicted position: planned ones from `after`, the rest as they are."""
    result = {symbol: _live_holding(context, symbol) for symbol in context.snapshot.positions}
    result.update(after)
    return result


def _resting_before(context: Context) -> dict[str, list[Resting]]:
    return {
        symbol: [_resting(order) for order in orders if order.price is not None]
        for symbol, orders in context.snapshot.open_orders.items()
    }


def _resting(order: Order) -> Resting:
    assert order.price is not None
    return Resting(order.side, order.price, order.remaining, order.reduce_only)


def _resting_after(context: Context, actions: list[Action]) -> dict[str, list[Resting]]:
    """Every resting order once the plan ran: live ones not cancelled, plus those it places."""
    cancelled_all = {a.symbol for a in actions if a.kind == "cancel_all_orders"}
    cancelled = {(a.request.body or {}).get("orderId") for a in actions if a.kind == "cancel_order"}
    result: dict[str, list[Resting]] = {}
    for symbol, orders in context.snapshot.open_orders.items():
        if symbol not in cancelled_all:
            result[symbol] = [
                _resting(o) for o in orders if o.id not in cancelled and o.price is not None
            ]
    for action in actions:
        body = action.request.body or {}
        if action.kind == "place_order" and body.get("orderType") == "limit":
            result.setdefault(action.symbol, []).append(
                Resting(
                    str(body["side"]),
                    Decimal(body["price"]),
                    Decimal(body["size"]),
                    bool(body.get("reduce_only")),
                )
            )
    return result


def _worst_gross(
    context: Context, holdings: dict[str, Holding | None], orders: dict[str, list[Resting]]
) -> Decimal:
    signed = {s: h.signed for s, h in holdings.items() if h is not None}
    marks = {s: context.snapshot.mark(s) or h.entry for s, h in holdings.items() if h is not None}
    return _margin(worst_case_gross(signed, marks, orders))


def _resting_cap_violations(context: Context, actions: list[Action], cap: Decimal) -> Iterator[str]:
    """Resting orders on one side of a symbol could all fill together: they share the cap."""
    placed_sides = {
        (a.symbol, (a.request.body or {}).get("side"))
        for a in actions
        if a.kind == "place_order"
        and (a.request.body or {}).get("orderType") == "limit"
        and not (a.request.body or {}).get("reduce_only")
    }
    after = _resting_after(context, actions)
    for symbol, side in sorted(placed_sides, key=str):
        total = _margin(resting_side_notional(after.get(symbol, []), str(side)))
        if total > cap:
            yield (
                f"{symbol}: resting {side} orders after the plan add up to {total:f}, which "
                f"could fill together: exceeds policy.max_order_notional {cap:f}"
            )


def _gross(context: Context, holdings: dict[str, Holding | None]) -> Decimal:
    total = Decimal(0)
    for symbol, holding in holdings.items():
        if holding is not None:
            mark = context.snapshot.mark(symbol) or holding.entry
            total += holding.size * mark
    return _margin(total)


# -- the rest of the plan -----------------------------------------------------------------------


def _summary(
    context: Context, actions: list[Action], after: dict[str, Holding | None]
) -> PlanSummary:
    market = [
        action
        for action in actions
        if action.kind == "close_position"
        or (
            action.kind == "place_order"
            and (action.request.body or {}).get("orderType") == "market"
        )
    ]
    cancelled = sum(
        int(action.before.get("orders", 0)) if action.kind == "cancel_all_orders" else 1
        for action in actions
        if action.kind in ("cancel_order", "cancel_all_orders")
    )
    changed = sorted({action.symbol for action in actions})
    return PlanSummary(
        gross_before=_gross(
            context, {s: _live_holding(context, s) for s in context.snapshot.positions}
        ),
        gross_after=_gross(context, _resulting_holdings(context, after)),
        estimated_fees=_margin(sum((a.notional for a in market), Decimal(0)) * TAKER_FEE_RATE),
        orders_to_place=sum(
            1
            for action in actions
            if action.kind == "place_order"
            and (action.request.body or {}).get("orderType") == "limit"
        ),
        orders_to_cancel=cancelled,
        symbols_changed=tuple(changed),
        symbols_unchanged=tuple(s for s in sorted(context.desired.symbols) if s not in changed),
    )


def _change(context: Context, sp: SymbolPlan) -> SymbolChange:
    """The reviewer's before/after of one symbol: position and resting order count."""
    mark = context.snapshot.mark(sp.symbol)
    before = _live_holding(context, sp.symbol)
    orders_before = len(context.snapshot.orders(sp.symbol))
    cancelled = sum(
        int(action.before.get("orders", 0)) if action.kind == "cancel_all_orders" else 1
        for action in sp.actions
        if action.kind in ("cancel_order", "cancel_all_orders")
    )
    placed = sum(
        1
        for action in sp.actions
        if action.kind == "place_order" and (action.request.body or {}).get("orderType") == "limit"
    )
    return SymbolChange(
        symbol=sp.symbol,
        mark=mark,
        before=_view(before, mark),
        after=_view(sp.after, mark),
        orders_before=orders_before,
        orders_after=orders_before - cancelled + placed,
        orders_cancelled=cancelled,
        orders_placed=placed,
    )


def _view(holding: Holding | None, mark: Decimal | None) -> PositionView:
    if holding is None:
        return PositionView()
    return PositionView(
        side=holding.side,
        size=holding.size,
        notional=_margin(holding.size * mark) if mark is not None else None,
        leverage=holding.leverage,
        margin=holding.margin,
        take_profit=holding.take_profit,
        stop_loss=holding.stop_loss,
    )


def _fingerprinted(context: Context, actions: list[Action]) -> list[str]:
    return sorted(set(context.desired.symbols) | {action.symbol for action in actions})


def _marks_used(context: Context, symbol_plans: list[SymbolPlan]) -> dict[str, Decimal]:
    """The price of every symbol where the plan trades at market, sized from a price, or
    places a resting order (judged against it: see `reconciler.crossing`)."""
    marks: dict[str, Decimal] = {}
    for sp in symbol_plans:
        entry = context.desired.symbols.get(sp.symbol)
        sized = entry is not None and entry.position is not None and entry.position.side != "flat"
        trades = any(
            action.kind == "close_position"
            or (action.request.body or {}).get("orderType") == "market"
            for action in sp.actions
        )
        mark = context.snapshot.mark(sp.symbol)
        if (sized or trades or sp.placed) and mark is not None:
            marks[sp.symbol] = mark
    return marks


def _empty_reason(context: Context) -> str:
    if not context.desired.symbols:
        return "the desired state manages no symbols"
    return "the account already matches the desired state within tolerance"
