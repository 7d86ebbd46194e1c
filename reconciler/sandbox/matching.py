"""How fills change positions and wallets, and what a mark move sets off.

A fill is the only thing that moves a position: it first reduces an opposite position
(releasing margin pro rata and realising PnL), then opens or adds with whatever is left.
That single path serves placements, resting orders, take-profit/stop-loss and `/close`, so
their accounting cannot diverge.

A taker fills either at the mark (moved by `slippage_bps`), or, with `book_depth` on, by
walking the synthetic book level by level (`marketdata.book_level`), one fill per level. With
`resting_partial_fills` on, a mark move trades only `marketdata.traded_volume` at each
resting order's price; with `stop_slippage` on, TP/SL and liquidations close through the book.
"""

from __future__ import annotations

from decimal import Decimal

from reconciler.sandbox.accounting import (
    ZERO,
    average_price,
    fee,
    initial_margin,
    money,
    position_side,
    realized_pnl,
)
from reconciler.sandbox.marketdata import MAX_WALK_LEVELS, book_level, traded_volume
from reconciler.sandbox.records import OrderRecord, PositionRecord, SymbolRecord
from reconciler.sandbox.session import Session

__all__ = [
    "cancel",
    "cancel_stale_reduce_only",
    "execute_fill",
    "fill_crossed_orders",
    "liquidate",
    "market_close",
    "take",
    "taker_price",
    "trigger_take_profit_stop_loss",
    "walk_book",
]

_BASIS_POINTS = Decimal(10_000)


def taker_price(
    session: Session, side: str, mark: Decimal, limit: Decimal | None = None
) -> Decimal:
    """The mark moved against the taker by the slippage, but never beyond its limit."""
    slip = mark * session.config.slippage_bps / _BASIS_POINTS
    price = money(mark + slip if side == "buy" else mark - slip)
    if limit is not None:
        price = min(price, limit) if side == "buy" else max(price, limit)
    return price


def take(
    session: Session,
    order: OrderRecord,
    size: Decimal,
    limit: Decimal | None = None,
    *,
    walk: bool | None = None,
) -> Decimal:
    """Fill up to `size` of `order` as a taker; returns the size filled.

    `walk` (default: the `book_depth` setting) walks the book; otherwise one fill at the
    mark moved by the slippage, never beyond `limit`. The caller decided it is marketable.
    """
    spec = session.require_symbol(order.symbol)
    if session.config.book_depth if walk is None else walk:
        return walk_book(session, spec, order, size, limit)
    price = taker_price(session, order.side, spec.mark_price, limit)
    return execute_fill(session, order, size, price, "taker")


def walk_book(
    session: Session,
    spec: SymbolRecord,
    order: OrderRecord,
    size: Decimal,
    limit: Decimal | None,
) -> Decimal:
    """Take the synthetic book's levels best first until `size` is filled or `limit` is passed.

    Each level reached gives one fill at its price for `min(left, level size)`. The book is
    the same for every order (it refills at once). A market order that outlasts every level
    (bids end at a price of 0) fills the rest at the last price reached.
    """
    book_side = "ask" if order.side == "buy" else "bid"
    left = size
    last: Decimal | None = None
    for level in range(MAX_WALK_LEVELS):
        price, available = book_level(spec, book_side, level)
        if available <= 0:
            break
        if limit is not None and (price > limit if order.side == "buy" else price < limit):
            return size - left
        portion = min(left, available)
        got = execute_fill(session, order, portion, price, "taker")
        left -= got
        last = price
        if got < portion or left == 0:
            return size - left
    if left > 0 and last is not None and limit is None:
        left -= execute_fill(session, order, left, last, "taker")
    return size - left


def execute_fill(
    session: Session, order: OrderRecord, size: Decimal, price: Decimal, liquidity: str
) -> Decimal:
    """Fill up to `size` of `order` at `price`; returns the size filled.

    A reduce-only order is clipped to the opposite position and fills nothing without one.
    The caller decides the order's status and saves it.
    """
    position = session.position(order.user_id, order.symbol)
    opens_side = position_side(order.side)
    reducing = position is not None and position.side != opens_side
    if order.reduce_only:
        size = min(size, position.size) if position is not None and reducing else ZERO
    if size <= 0:
        return ZERO
    closing = min(size, position.size) if position is not None and reducing else ZERO
    opening = size - closing
    rate = session.config.taker_fee if liquidity == "taker" else session.config.maker_fee
    fill_fee = fee(price, size, rate)
    pnl = ZERO
    if position is not None and closing:
        pnl = realized_pnl(position.side, position.entry_price, price, closing)
        if closing == position.size:
            released = position.margin
        else:
            released = money(position.margin * closing / position.size)
        position.size -= closing
        position.margin -= released
        session.save_position(position)
        if position.size == 0:
            position = None
    if opening:
        _open_or_add(session, order, position, opening, price)
    if fill_fee:
        session.book(order.user_id, "fee", -fill_fee, order.symbol)
    if pnl:
        session.book(order.user_id, "realized_pnl", pnl, order.symbol)
    session.insert_fill(order, size, price, fill_fee, pnl, liquidity)
    if order.avg_fill_price is None:
        order.avg_fill_price = price
    else:
        order.avg_fill_price = average_price(order.avg_fill_price, order.filled_size, price, size)
    order.filled_size += size
    session.set_prices(order.symbol, None, price)
    session.touched_users[order.user_id] = None
    return size


def _open_or_add(
    session: Session,
    order: OrderRecord,
    position: PositionRecord | None,
    size: Decimal,
    price: Decimal,
) -> None:
    if position is None:
        session.insert_position(
            PositionRecord(
                id=0,
                user_id=order.user_id,
                symbol=order.symbol,
                side=position_side(order.side),
                size=size,
                entry_price=price,
                leverage=order.leverage,
                margin=initial_margin(price, size, order.leverage),
                take_profit=order.take_profit,
                stop_loss=order.stop_loss,
                created_at=session.now,
                updated_at=session.now,
            )
        )
        return
    position.entry_price = average_price(position.entry_price, position.size, price, size)
    position.size += size
    position.margin += initial_margin(price, size, position.leverage)
    if order.take_profit is not None:
        position.take_profit = order.take_profit
    if order.stop_loss is not None:
        position.stop_loss = order.stop_loss
    session.save_position(position)


def cancel(session: Session, order: OrderRecord) -> None:
    order.status = "cancelled"
    order.reserved_margin = ZERO
    session.save_order(order)


def cancel_stale_reduce_only(session: Session, user_id: str, symbol: str) -> None:
    """Cancel resting reduce-only orders that no longer have anything to reduce."""
    position = session.position(user_id, symbol)
    for order in session.open_orders(user_id, symbol, reduce_only=True):
        if position is None or position.side == position_side(order.side):
            cancel(session, order)


def market_close(
    session: Session, position: PositionRecord, *, walk: bool | None = None
) -> OrderRecord:
    """Close the whole position with a reduce-only market order, as `/close` and TP/SL do."""
    side = "sell" if position.side == "long" else "buy"
    order = session.insert_order(
        OrderRecord(
            id=0,
            user_id=position.user_id,
            symbol=position.symbol,
            side=side,
            order_type="market",
            size=position.size,
            price=None,
            leverage=position.leverage,
            reduce_only=True,
            take_profit=None,
            stop_loss=None,
            status="open",
            filled_size=ZERO,
            avg_fill_price=None,
            reserved_margin=ZERO,
            created_at=session.now,
            updated_at=session.now,
        )
    )
    take(session, order, order.size, walk=walk)
    order.status = "filled"
    session.save_order(order)
    cancel_stale_reduce_only(session, position.user_id, position.symbol)
    return order


def _crossed(order: OrderRecord, mark: Decimal) -> bool:
    assert order.price is not None
    return order.price >= mark if order.side == "buy" else order.price <= mark


def fill_crossed_orders(session: Session, spec: SymbolRecord) -> list[str]:
    """Fill every resting order the mark has reached, at its own limit price, as maker.

    Orders farther from the new mark were passed first on the way there, so they go first;
    at one price, the older order first. With `resting_partial_fills`, the move trades only
    `traded_volume(price)` at each price, shared in that order; an order that gets less than
    it needs stays `partially_filled` with its reserve cut to the remainder.
    """
    mark = spec.mark_price
    crossed = [order for order in session.resting_orders(spec.symbol) if _crossed(order, mark)]
    crossed.sort(key=lambda order: (-abs((order.price or mark) - mark), order.id))
    partial = session.config.resting_partial_fills
    volume: dict[Decimal, Decimal] = {}
    filled: list[str] = []
    for candidate in crossed:
        order = session.order(str(candidate.id))
        if order is None or not order.is_open or order.price is None:
            continue
        size = order.remaining
        if partial:
            left = volume.setdefault(order.price, traded_volume(spec, order.price))
            size = min(size, left)
            if size <= 0:
                continue
        got = execute_fill(session, order, size, order.price, "maker")
        if not got:
            cancel(session, order)
        elif order.remaining > 0 and got == size:  # short of volume, not clipped
            volume[order.price] = volume.get(order.price, ZERO) - got
            order.status = "partially_filled"
            if not order.reduce_only:
                order.reserved_margin = initial_margin(order.price, order.remaining, order.leverage)
            session.save_order(order)
            filled.append(str(order.id))
        else:  # in full, or a reduce-only order clipped to its position: done
            if partial:
                volume[order.price] -= got
            order.reserved_margin = ZERO
            order.status = "filled"
            session.save_order(order)
            filled.append(str(order.id))
        cancel_stale_reduce_only(session, order.user_id, order.symbol)
    return filled


def trigger_take_profit_stop_loss(session: Session, spec: SymbolRecord) -> list[str]:
    mark = spec.mark_price
    triggered: list[str] = []
    for position in session.positions_on(spec.symbol):
        take_profit, stop_loss = position.take_profit, position.stop_loss
        if position.side == "long":
            hit = (take_profit is not None and mark >= take_profit) or (
                stop_loss is not None and mark <= stop_loss
            )
        else:
            hit = (take_profit is not None and mark <= take_profit) or (
                stop_loss is not None and mark >= stop_loss
            )
        if hit:
            walk = session.config.book_depth or session.config.stop_slippage
            market_close(session, position, walk=walk)
            triggered.append(str(position.id))
    return triggered


def liquidate(session: Session, spec: SymbolRecord) -> list[str]:
    """Remove every position the mark has carried past its liquidation price.

    The whole isolated margin is lost. Without `stop_slippage` no order or fill is written,
    only the ledger line. With it, the position is closed through the book by a reduce-only
    market order (its fills, fee and realised PnL recorded as usual), and the ledger's
    `liquidation` line then settles the difference, so the wallet still loses exactly the
    margin: what the close left of it goes, and a loss beyond it is covered.
    """
    mark = spec.mark_price
    rate = session.config.maintenance_margin_rate
    liquidated: list[str] = []
    for position in session.positions_on(spec.symbol):
        threshold = position.liquidation_price(rate)
        if threshold is None:
            continue
        if (position.side == "long" and mark <= threshold) or (
            position.side == "short" and mark >= threshold
        ):
            if session.config.stop_slippage:
                account = session.require_account(position.user_id)
                owed = account.wallet_balance - position.margin
                market_close(session, position, walk=True)
                after = session.require_account(position.user_id).wallet_balance
                session.book(position.user_id, "liquidation", owed - after, spec.symbol)
            else:
                session.book(position.user_id, "liquidation", -position.margin, spec.symbol)
                position.size = ZERO
                session.save_position(position)
                cancel_stale_reduce_only(session, position.user_id, spec.symbol)
            liquidated.append(str(position.id))
    return liquidated
