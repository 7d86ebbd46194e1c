"""Refuse what would trigger or fill the moment it reaches the exchange.

A take-profit or stop-loss the mark has already passed closes the position on the next tick,
and every later apply opens it again; a resting order that crosses the book fills at once as
a taker, so a symbol the file says is flat gets a position. Neither can ever converge, and
both cost money, so the plan refuses them (`Plan.violations`, exit 4, nothing sent), each
named by file, line and field.

What counts as crossed, against the mark (the price the exchange triggers and fills at)
and, where the snapshot has it, the top of the book:

- a long's take-profit at or below the mark, its stop-loss at or above it; a short's the
  other way round;
- a buy limit at or above the best ask or the mark; a sell at or below the best bid or the
  mark (the sandbox fills a limit order the mark reaches, an exchange one the book reaches,
  so both are checked; without a book, the mark alone);
- a resting order's own take-profit or stop-loss on the wrong side of its limit price.

An order marked `taker: true` may cross on purpose; nothing else may.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal

from reconciler.model.desired import DesiredOrder, DesiredState
from reconciler.model.snapshot import BookTop, Snapshot

__all__ = ["crossing_violations"]


def crossing_violations(
    desired: DesiredState, snapshot: Snapshot, placed: Mapping[str, Sequence[int]]
) -> list[str]:
    """Every crossed trigger of the file and every crossing order the plan would place.

    `placed` names, per symbol, the indices of the file's orders the plan sends: an order
    already resting is not sent again, so only these are judged against the book.
    """
    problems: list[str] = []
    for symbol, entry in desired.symbols.items():
        mark = snapshot.mark(symbol)
        position = entry.position
        if position is not None and position.side != "flat":
            problems.extend(_position_triggers(desired, symbol, position.side, mark))
        for index in placed.get(symbol, ()):
            assert entry.orders is not None
            problems.extend(
                _order_crossings(desired, snapshot, symbol, index, entry.orders[index], mark)
            )
    return problems


def _position_triggers(
    desired: DesiredState, symbol: str, side: str, mark: Decimal | None
) -> Iterator[str]:
    entry = desired.symbols[symbol]
    assert entry.position is not None
    path = ("symbols", symbol, "position")
    for name in ("take_profit", "stop_loss"):
        price: Decimal | None = getattr(entry.position, name)
        if price is None:
            continue
        if mark is None:
            yield desired.problem((*path, name), "no mark price to check it against")
            continue
        above = (side == "long") == (name == "take_profit")  # where it must be, from the mark
        if (above and price <= mark) or (not above and price >= mark):
            where = "at or below" if above else "at or above"
            yield desired.problem(
                (*path, name),
                f"{name} {price:f} of a {side} is {where} the mark {mark:f}: "
                "it would trigger at once and close the position",
            )


def _order_crossings(
    desired: DesiredState,
    snapshot: Snapshot,
    symbol: str,
    index: int,
    order: DesiredOrder,
    mark: Decimal | None,
) -> Iterator[str]:
    path = ("symbols", symbol, "orders", index)
    side = "long" if order.side == "buy" else "short"  # what a fill opens, at the limit price
    for name in ("take_profit", "stop_loss"):
        price: Decimal | None = getattr(order, name)
        above = (side == "long") == (name == "take_profit")
        if price is not None and (
            (above and price <= order.price) or (not above and price >= order.price)
        ):
            where = "at or below" if above else "at or above"
            yield desired.problem(
                (*path, name),
                f"{name} {price:f} is {where} the order's price {order.price:f}: "
                f"it would close the {side} the fill opens at once",
            )
    if not order.taker:
        if mark is None:
            yield desired.problem((*path, "price"), "no mark price to check the order against")
        else:
            crossed = _crossed(order, mark, snapshot.books.get(symbol))
            if crossed is not None:
                yield desired.problem(
                    (*path, "price"),
                    f"{order.side} limit @ {order.price:f} would fill at once: {crossed} "
                    "(set taker: true to send it anyway)",
                )


def _crossed(order: DesiredOrder, mark: Decimal, book: BookTop | None) -> str | None:
    """What the order crosses, or None when it would rest."""
    bid = book.bid if book is not None else None
    ask = book.ask if book is not None else None
    if order.side == "buy":
        if ask is not None and order.price >= ask:
            return f"at or above the best ask {ask:f}"
        if order.price >= mark:
            return f"at or above the mark {mark:f}"
    else:
        if bid is not None and order.price <= bid:
            return f"at or below the best bid {bid:f}"
        if order.price <= mark:
            return f"at or below the mark {mark:f}"
    return None
