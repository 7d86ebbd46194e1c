"""`POST /order`: validating an order body, filling what is marketable, resting the rest.

The margin check runs after the order has been applied inside the transaction: whatever
the order opened (including the far side of a flip, net of the margin and PnL the closing
side released) must leave the available balance non-negative, with the maker fee of a
resting remainder on top. A failed check raises and the transaction rolls everything back.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.sandbox import matching
from reconciler.sandbox.accounting import (
    ZERO,
    fee,
    floor_to_grid,
    initial_margin,
    position_side,
)
from reconciler.sandbox.records import OrderRecord, PositionRecord, SymbolRecord
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.session import Session
from reconciler.sandbox.terms import DEFAULT_LEVERAGE
from reconciler.sandbox.validation import Body, invalid

__all__ = ["ORDER_FIELDS", "check_take_profit_stop_loss", "place_order"]

ORDER_FIELDS = frozenset(
    {
        "userId",
        "symbol",
        "side",
        "orderType",
        "size",
        "price",
        "leverage",
        "reduce_only",
        "takeProfit",
        "stopLoss",
    }
)


def check_take_profit_stop_loss(
    side: str, take_profit: Decimal | None, stop_loss: Decimal | None, names: tuple[str, str]
) -> None:
    """A long profits above its stop, a short below; anything else could never make sense."""
    if take_profit is None or stop_loss is None:
        return
    if side == "long" and take_profit <= stop_loss:
        raise invalid(f"{names[0]} must be above {names[1]} for a long position")
    if side == "short" and take_profit >= stop_loss:
        raise invalid(f"{names[0]} must be below {names[1]} for a short position")


def _tradable_symbol(session: Session, name: str) -> SymbolRecord:
    spec = session.symbol(name)
    if spec is None:
        raise invalid(f"unknown symbol {name!r}")
    if spec.status != "trading":
        raise invalid(f"symbol {name} is {spec.status}")
    return spec


def _exposure(position: PositionRecord | None, side: str) -> Decimal:
    """Size held on `side`: what an order on that side would be adding to."""
    return position.size if position is not None and position.side == side else ZERO


def _read_order(session: Session, user_id: str, body: dict[str, Any]) -> OrderRecord:
    request = Body(body, ORDER_FIELDS, user_id)
    spec = _tradable_symbol(session, request.text("symbol"))
    side = request.choice("side", ("buy", "sell"))
    order_type = request.choice("orderType", ("market", "limit"))
    size = request.positive("size", spec.step_size)
    if size < spec.min_size:
        raise invalid(f"size must be at least {spec.min_size}")
    price: Decimal | None = None
    if order_type == "limit":
        price = request.positive("price", spec.tick_size)
    elif request.optional_number("price") is not None:
        raise invalid("price is only for limit orders")
    reduce_only = request.flag("reduce_only")
    take_profit = request.optional_positive("takeProfit", spec.tick_size)
    stop_loss = request.optional_positive("stopLoss", spec.tick_size)
    opens_side = position_side(side)
    check_take_profit_stop_loss(opens_side, take_profit, stop_loss, ("takeProfit", "stopLoss"))
    position = session.position(user_id, spec.symbol)
    if reduce_only and (position is None or position.side == opens_side):
        raise invalid("reduce_only order has no opposite position to reduce")
    leverage = request.optional_integer("leverage")
    if leverage is None:
        leverage = position.leverage if position is not None else DEFAULT_LEVERAGE
        leverage = min(leverage, spec.max_leverage)
    if not 1 <= leverage <= spec.max_leverage:
        raise invalid(f"leverage must be between 1 and {spec.max_leverage}")
    return OrderRecord(
        id=0,
        user_id=user_id,
        symbol=spec.symbol,
        side=side,
        order_type=order_type,
        size=size,
        price=price,
        leverage=leverage,
        reduce_only=reduce_only,
        take_profit=take_profit,
        stop_loss=stop_loss,
        status="open",
        filled_size=ZERO,
        avg_fill_price=None,
        reserved_margin=ZERO,
        created_at=session.now,
        updated_at=session.now,
    )


def place_order(session: Session, user_id: str, body: dict[str, Any]) -> OrderRecord:
    session.require_account(user_id)
    order = _read_order(session, user_id, body)
    spec = session.require_symbol(order.symbol)
    opens_side = position_side(order.side)
    exposure_before = _exposure(session.position(user_id, order.symbol), opens_side)

    session.insert_order(order)
    _execute(session, spec, order)
    session.save_order(order)

    resting_fee = ZERO
    if order.is_open and order.price is not None:
        resting_fee = fee(order.price, order.remaining, session.config.maker_fee)
    opened = _exposure(session.position(user_id, order.symbol), opens_side) > exposure_before
    needs_margin = not order.reduce_only and (opened or order.is_open)
    if needs_margin and session.available_balance(user_id) < resting_fee:
        raise Rejection("INSUFFICIENT_MARGIN", "not enough available balance")
    matching.cancel_stale_reduce_only(session, user_id, order.symbol)
    placed = session.order(str(order.id))
    assert placed is not None
    return placed


def _execute(session: Session, spec: SymbolRecord, order: OrderRecord) -> None:
    """Fill what is marketable now; rest the remainder of a limit order.

    At the mark (the default) a limit order is marketable when it reaches the mark; with
    `book_depth` it takes every level of the book its price reaches, which may be none.
    """
    mark = spec.mark_price
    if order.order_type == "market":
        matching.take(session, order, order.size)
        # A market order never rests: a reduce-only one clipped to its position is done.
        order.status = "filled"
        return
    assert order.price is not None
    marketable = order.price >= mark if order.side == "buy" else order.price <= mark
    if marketable or session.config.book_depth:
        ratio = session.config.partial_fill_ratio
        immediate = order.size
        if ratio is not None:
            immediate = min(order.size, floor_to_grid(order.size * ratio, spec.step_size))
        if immediate > 0:
            matching.take(session, order, immediate, order.price)
    if order.remaining == 0:
        order.status = "filled"
        return
    order.status = "partially_filled" if order.filled_size else "open"
    if not order.reduce_only:
        order.reserved_margin = initial_margin(order.price, order.remaining, order.leverage)
