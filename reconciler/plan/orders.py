"""Rule 4: resting orders, a maximum matching between the wanted and the live ones."""

from __future__ import annotations

from decimal import Decimal

from reconciler.model.account import Order
from reconciler.model.desired import (
    DesiredOrder,
    DesiredState,
)
from reconciler.model.intents import CancelAllOrders, CancelOrder, PlaceOrder
from reconciler.model.plan import Action, Phase, Risk
from reconciler.model.snapshot import Snapshot
from reconciler.plan.actions import (
    make_action,
    order_view,
    price_text,
)
from reconciler.plan.model import (
    Context,
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
        order.order_type,
        order.price,
        order.remaining,
        order.reduce_only,
        leverage,
        order.take_profit,
        order.stop_loss,
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
    for order in sorted(live, key=lambda order: (order.created_at, order.id)):
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
    """Cancel these live orders: one cancel-all when they are all of the symbol's, and >= 2."""
    if not doomed:
        return []
    every = {order.id for order in context.snapshot.orders(symbol)}
    if len(doomed) >= 2 and {order.id for order in doomed} == every:
        reduce_only = [order for order in doomed if order.reduce_only]
        risk: Risk = "reduce" if not reduce_only else "neutral"
        return [
            make_action(
                CancelAllOrders(symbol=symbol),
                Phase.CANCEL_ORDERS,
                before={"orders": len(doomed), "ids": sorted(order.id for order in doomed)},
                after={"orders": 0},
                risk=risk,
                reason=f"cancel all {len(doomed)} open orders",
            )
        ]
    return [
        make_action(
            CancelOrder(symbol=symbol, order_id=order.id),
            Phase.CANCEL_ORDERS,
            before=order_view(order),
            after={},
            notional=(order.price or Decimal(0)) * order.remaining,
            risk="increase" if order.reduce_only else "reduce",
            reason=f"cancel {order.side} {order.remaining:f} @ {price_text(order.price)}",
        )
        for order in sorted(doomed, key=lambda order: (order.created_at, order.id))
    ]


def place_limit(context: Context, symbol: str, order: DesiredOrder) -> Action:
    leverage = context.desired.order_leverage(symbol, order)
    intent = PlaceOrder(
        symbol=symbol,
        side=order.side,
        order_type="limit",
        size=order.size,
        price=order.price,
        leverage=leverage,
        reduce_only=order.reduce_only,
        take_profit=order.take_profit,
        stop_loss=order.stop_loss,
    )
    return make_action(
        intent,
        Phase.PLACE_ORDERS,
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
