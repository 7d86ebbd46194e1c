"""What a reviewer reads beside the calls: totals, per-symbol before and after, marks used."""

from __future__ import annotations

from decimal import Decimal

from reconciler.model.intents import ClosePosition, PlaceOrder
from reconciler.model.plan import (
    Action,
    PlanSummary,
    PositionView,
    SymbolChange,
)
from reconciler.plan.liquidation import distance_percent, liquidation_price
from reconciler.plan.model import (
    TAKER_FEE_RATE,
    Context,
    Holding,
    SymbolPlan,
    money,
)
from reconciler.plan.policy import (
    gross,
    live_holding,
    resulting_holdings,
)

# -- the rest of the plan -----------------------------------------------------------------------


def summarize(
    context: Context, actions: list[Action], after: dict[str, Holding | None]
) -> PlanSummary:
    market = [
        action
        for action in actions
        if isinstance(action.intent, ClosePosition) or action.intent.is_market
    ]
    cancelled = sum(
        int(action.before.get("orders", 0)) if action.kind == "cancel_all_orders" else 1
        for action in actions
        if action.kind in ("cancel_order", "cancel_all_orders")
    )
    changed = sorted({action.symbol for action in actions})
    return PlanSummary(
        gross_before=gross(
            context, {s: live_holding(context, s) for s in context.snapshot.positions}
        ),
        gross_after=gross(context, resulting_holdings(context, after)),
        estimated_fees=money(sum((a.notional for a in market), Decimal(0)) * TAKER_FEE_RATE),
        orders_to_place=sum(1 for action in actions if _places_limit(action)),
        orders_to_cancel=cancelled,
        symbols_changed=tuple(changed),
        symbols_unchanged=tuple(s for s in sorted(context.desired.symbols) if s not in changed),
    )


def symbol_change(context: Context, sp: SymbolPlan) -> SymbolChange:
    """The reviewer's before/after of one symbol: position and resting order count."""
    mark = context.snapshot.mark(sp.symbol)
    before = live_holding(context, sp.symbol)
    orders_before = len(context.snapshot.orders(sp.symbol))
    cancelled = sum(
        int(action.before.get("orders", 0)) if action.kind == "cancel_all_orders" else 1
        for action in sp.actions
        if action.kind in ("cancel_order", "cancel_all_orders")
    )
    placed = sum(1 for action in sp.actions if _places_limit(action))
    return SymbolChange(
        symbol=sp.symbol,
        mark=mark,
        before=_view(context, before, mark),
        after=_view(context, sp.after, mark),
        orders_before=orders_before,
        orders_after=orders_before - cancelled + placed,
        orders_cancelled=cancelled,
        orders_placed=placed,
    )


def _view(context: Context, holding: Holding | None, mark: Decimal | None) -> PositionView:
    if holding is None:
        return PositionView()
    rate = context.maintenance_rate
    return PositionView(
        side=holding.side,
        size=holding.size,
        notional=money(holding.size * mark) if mark is not None else None,
        leverage=holding.leverage,
        margin=holding.margin,
        take_profit=holding.take_profit,
        stop_loss=holding.stop_loss,
        liquidation_price=liquidation_price(holding, rate),
        liquidation_distance=distance_percent(holding, mark, rate) if mark is not None else None,
    )


def fingerprinted(context: Context, actions: list[Action]) -> list[str]:
    return sorted(set(context.desired.symbols) | {action.symbol for action in actions})


def marks_used(context: Context, symbol_plans: list[SymbolPlan]) -> dict[str, Decimal]:
    """The price of every symbol where the plan trades at market, sized from a price, or
    places a resting order (judged against it: see `reconciler.plan.crossing`)."""
    marks: dict[str, Decimal] = {}
    for sp in symbol_plans:
        entry = context.desired.symbols.get(sp.symbol)
        sized = entry is not None and entry.position is not None and entry.position.side != "flat"
        trades = any(
            isinstance(action.intent, ClosePosition) or action.intent.is_market
            for action in sp.actions
        )
        mark = context.snapshot.mark(sp.symbol)
        if (sized or trades or sp.placed) and mark is not None:
            marks[sp.symbol] = mark
    return marks


def empty_reason(context: Context) -> str:
    if not context.desired.symbols:
        return "the desired state manages no symbols"
    return "the account already matches the desired state within tolerance"


def _places_limit(action: Action) -> bool:
    return isinstance(action.intent, PlaceOrder) and action.intent.order_type == "limit"
