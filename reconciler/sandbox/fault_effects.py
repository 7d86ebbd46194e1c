"""What faults do inside the engine: the engine-side half of `faults.py`.

These act inside the engine's transaction (`Exchange._unit`, joined when already inside one),
through the same matching functions a mark move uses, so their accounting is the engine's own.
The request pipeline calls `before_execute`/`after_execute` around a mutating request's
handler, and `hide_recent`/`shift_page` on a private read's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.sandbox.engine import Exchange
    from reconciler.sandbox.faults import FaultInjector

__all__ = [
    "after_execute",
    "before_execute",
    "fill_resting_order",
    "hide_recent",
    "liquidate_position",
    "shift_page",
    "symbol_of",
]


def fill_resting_order(exchange: Exchange, user_id: str, order_id: str) -> bool:
    """Fill the rest of an open order of `user_id` at its own price as a maker (a lost race)."""
    from reconciler.sandbox import matching
    from reconciler.sandbox.accounting import ZERO

    with exchange._unit() as session:
        order = session.order(order_id)
        if order is None or order.user_id != user_id or not order.is_open or order.price is None:
            return False
        order.reserved_margin = ZERO
        if matching.execute_fill(session, order, order.remaining, order.price, "maker"):
            order.status = "filled"
            session.save_order(order)
        else:
            matching.cancel(session, order)
        matching.cancel_stale_reduce_only(session, order.user_id, order.symbol)
        return True


def liquidate_position(exchange: Exchange, user_id: str, symbol: str) -> dict[str, Any] | None:
    """Liquidate `user_id`'s position on `symbol` as the mark would: the margin is lost.

    Returns what the checker needs (the position and the last fill id before it), or None when
    there is no position.
    """
    from reconciler.sandbox import matching
    from reconciler.sandbox.accounting import ZERO

    with exchange._unit() as session:
        position = session.position(user_id, symbol)
        if position is None:
            return None
        row = session.execute("SELECT MAX(id) AS last FROM fills").fetchone()
        detail = {
            "symbol": symbol,
            "position_id": str(position.id),
            "side": position.side,
            "size": str(position.size),
            "last_fill_id": None if row is None or row["last"] is None else str(row["last"]),
        }
        session.book(user_id, "liquidation", -position.margin, symbol)
        position.size = ZERO
        session.save_position(position)
        matching.cancel_stale_reduce_only(session, user_id, symbol)
        return detail


def symbol_of(
    exchange: Exchange, user_id: str, path_params: Mapping[str, str], body: Mapping[str, Any]
) -> str | None:
    """The symbol a mutating request acts on, when it names one (body or position path)."""
    symbol = body.get("symbol")
    if isinstance(symbol, str):
        return symbol
    position_id = path_params.get("position_id")
    if position_id is not None:
        with exchange._unit() as session:
            for position in session.positions(user_id, None):
                if str(position.id) == position_id:
                    return position.symbol
    order_id = body.get("orderId")
    if isinstance(order_id, str):
        with exchange._unit() as session:
            order = session.order(order_id)
            if order is not None and order.user_id == user_id:
                return order.symbol
    return None


def before_execute(
    injector: FaultInjector,
    exchange: Exchange,
    user_id: str,
    path: str,
    path_params: Mapping[str, str],
    body: Mapping[str, Any],
) -> None:
    """Faults that strike a mutating request just before it executes (in the engine thread)."""
    profile = injector.profile
    if path == "/order/cancel" and profile.fill_before_cancel > 0:
        order_id = body.get("orderId")
        struck = isinstance(order_id, str) and injector.fill_before_cancel()
        if struck and fill_resting_order(exchange, user_id, str(order_id)):
            injector.record("fill_before_cancel", order_id=order_id)
    if profile.mark_jump <= 0 and profile.liquidate <= 0:
        return
    symbol = symbol_of(exchange, user_id, path_params, body)
    if symbol is None:
        return
    factor = injector.mark_jump()
    if factor is not None:
        with exchange._unit() as session:
            spec = session.require_symbol(symbol)
            old = session.mark(symbol)
            price = (old * factor / spec.tick_size).to_integral_value() * spec.tick_size
        if price > 0:
            exchange.set_prices({symbol: price})
            injector.record("mark_jump", symbol=symbol, old=str(old), new=str(price))
    if injector.liquidate():
        detail = liquidate_position(exchange, user_id, symbol)
        if detail is not None:
            injector.record("liquidate", **detail)


def after_execute(
    injector: FaultInjector, exchange: Exchange, user_id: str, path: str, data: Any
) -> Any:
    """Faults that change what a request did before its answer is written (same transaction)."""
    if not injector.profile.instant_fills or path != "/order" or not isinstance(data, dict):
        return data
    if data.get("status") not in ("open", "partially_filled") or data.get("price") is None:
        return data
    order_id = str(data.get("id"))
    if not fill_resting_order(exchange, user_id, order_id):
        return data
    injector.record("instant_fill", order_id=order_id)
    return exchange.get_order(user_id, order_id)


def hide_recent(injector: FaultInjector, exchange: Exchange, path: str, data: Any) -> Any:
    """`invisible_ms`: drop what was created too recently from a read's answer.

    Raises `LookupError` when the one record a read names is hidden (the pipeline answers 404).
    """
    cutoff = injector.invisible_since(exchange.clock())
    if cutoff is None:
        return data

    def visible(item: Any, stamp: str) -> bool:
        return not (isinstance(item, dict) and int(item.get(stamp, 0)) > cutoff)

    stamp = "timestamp" if path.startswith("/trade/") else "createdAt"
    if path == "/order/{order_id}":
        if not visible(data, stamp):
            raise LookupError(str(data.get("id")))
        return data
    if path == "/positions" and isinstance(data, list):
        return [item for item in data if visible(item, stamp)]
    paged = ("/order/open", "/trade/user/{user_id}", "/trade/order/{order_id}")
    if path in paged and isinstance(data, dict) and isinstance(data.get("items"), list):
        items = [item for item in data["items"] if visible(item, stamp)]
        hidden = len(data["items"]) - len(items)
        return {**data, "items": items, "total": data["total"] - hidden}
    return data


def shift_page(data: Any, next_page: Any) -> Any:
    """`page_shift`: this page as it reads once the set's first item has left."""
    if not (isinstance(data, dict) and isinstance(next_page, dict)):
        return data
    items = [*data["items"][1:], *next_page["items"][:1]]
    return {**data, "items": items, "total": max(0, data["total"] - 1)}
