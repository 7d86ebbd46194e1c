"""Rule 7: every policy breach of a plan, and every call the exchange would surely refuse."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from reconciler.model.account import Order
from reconciler.model.desired import Policy
from reconciler.model.intents import CancelOrder, Intent, PlaceOrder, SetLeverage
from reconciler.model.plan import (
    Action,
)
from reconciler.plan.exposure import Resting, resting_of, resting_side_notional, worst_case_gross
from reconciler.plan.model import (
    Context,
    Holding,
    money,
)

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
        live = {s: live_holding(context, s) for s in context.snapshot.positions}
        before = _worst_gross(context, live, _resting_before(context))
        gross = _worst_gross(
            context, resulting_holdings(context, after), _resting_after(context, actions)
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


def leverage_violations(intent: Intent, policy: Policy) -> Iterator[str]:
    """`policy.max_leverage` against the leverage an intent sets (a reduce-only order sets none)."""
    leverage = intent.leverage if isinstance(intent, PlaceOrder | SetLeverage) else None
    reduce_only = isinstance(intent, PlaceOrder) and intent.reduce_only
    cap = policy.max_leverage
    if cap is not None and leverage is not None and leverage > cap and not reduce_only:
        yield f"{intent.symbol}: leverage {leverage} exceeds policy.max_leverage {cap}"


def _action_violations(context: Context, action: Action) -> Iterator[str]:
    policy = context.desired.policy
    intent = action.intent
    if action.symbol not in context.desired.symbols and policy.unmanaged == "ignore":
        yield f"{action.symbol}: unmanaged symbol would be touched ({action.kind})"
    reduce_only = isinstance(intent, PlaceOrder) and intent.reduce_only
    yield from leverage_violations(intent, policy)
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
    if spec is not None and isinstance(intent, PlaceOrder) and intent.size < spec.min_size:
        yield (
            f"{action.symbol}: order size {intent.size:f} is below the minimum size "
            f"{spec.min_size:f}"
        )


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


def flatten_violations(
    context: Context, actions: list[Action], after: dict[str, Holding | None]
) -> Iterator[str]:
    """No plan closes the whole account, or more than `policy.max_closes`, without consent."""
    closes = sorted(action.symbol for action in actions if action.kind == "close_position")
    if not closes:
        return
    live = len(context.snapshot.positions)
    remaining = sum(1 for holding in resulting_holdings(context, after).values() if holding)
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


def live_holding(context: Context, symbol: str) -> Holding | None:
    position = context.snapshot.positions.get(symbol)
    return Holding.from_position(position) if position is not None else None


def resulting_holdings(
    context: Context, after: dict[str, Holding | None]
) -> dict[str, Holding | None]:
    """Every symbol's predicted position: planned ones from `after`, the rest as they are."""
    result = {symbol: live_holding(context, symbol) for symbol in context.snapshot.positions}
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
    cancelled = {a.intent.order_id for a in actions if isinstance(a.intent, CancelOrder)}
    result: dict[str, list[Resting]] = {}
    for symbol, orders in context.snapshot.open_orders.items():
        if symbol not in cancelled_all:
            result[symbol] = [
                _resting(o) for o in orders if o.id not in cancelled and o.price is not None
            ]
    for action in actions:
        resting = resting_of(action.intent)
        if resting is not None:
            result.setdefault(action.symbol, []).append(resting)
    return result


def _worst_gross(
    context: Context, holdings: dict[str, Holding | None], orders: dict[str, list[Resting]]
) -> Decimal:
    signed = {s: h.signed for s, h in holdings.items() if h is not None}
    marks = {s: context.snapshot.mark(s) or h.entry for s, h in holdings.items() if h is not None}
    return money(worst_case_gross(signed, marks, orders))


def _resting_cap_violations(context: Context, actions: list[Action], cap: Decimal) -> Iterator[str]:
    """Resting orders on one side of a symbol could all fill together: they share the cap."""
    placed_sides = {
        (a.symbol, a.intent.side)
        for a in actions
        if isinstance(a.intent, PlaceOrder)
        and a.intent.order_type == "limit"
        and not a.intent.reduce_only
    }
    after = _resting_after(context, actions)
    for symbol, side in sorted(placed_sides, key=str):
        total = money(resting_side_notional(after.get(symbol, []), str(side)))
        if total > cap:
            yield (
                f"{symbol}: resting {side} orders after the plan add up to {total:f}, which "
                f"could fill together: exceeds policy.max_order_notional {cap:f}"
            )


def gross(context: Context, holdings: dict[str, Holding | None]) -> Decimal:
    total = Decimal(0)
    for symbol, holding in holdings.items():
        if holding is not None:
            mark = context.snapshot.mark(symbol) or holding.entry
            total += holding.size * mark
    return money(total)
