"""Read the live account into a `Snapshot`: concurrently, and only what the plan needs.

This is the IO edge in front of the pure planner. `snapshot.needs(desired)` decides what to
read; this module only fetches it. Reads run concurrently in two rounds: specs, positions,
every page of open orders and (for weights) the account overview first, then market stats
for the symbols that need a price and hold no position (a position carries its own mark),
and the top of the book where the plan will place a resting order (known once the open
orders are read). An exchange that offers no book (a refusal of the read) leaves the mark
as the only reference; any other failure fails the read. Apply, which holds the plan made
from an earlier read, can start the second round's reads beside the first (`read_ahead`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal

from reconciler.levret.client import LevretClient
from reconciler.levret.errors import InvalidRequest, Rejected
from reconciler.model.account import Order, Position, SymbolSpec
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.model.snapshot import BookTop, Snapshot, needs
from reconciler.plan import symbols_placing_orders

__all__ = ["BOOK_DEPTH", "read_ahead", "read_snapshot"]

# The book levels a plan looks at: the best bid and ask.
BOOK_DEPTH = 1


def read_ahead(client: LevretClient, plan: Plan) -> None:
    """Tell `client` what the read `plan` was made from held (`ReadHint`), before apply's
    first read: that read then asks for every page of open orders with page 1, and finds the
    marks it needs already on their way. (It reads no book tops: see `read_snapshot`.)

    Only the symbols the plan acts on are read ahead, as apply's read is narrowed to them; a
    saved plan is the user's file, so its hint is bounded by the plan itself (and the pages
    read with page 1 by `client.PAGES_AT_ONCE`)."""
    hint = plan.read_hint
    if hint is None:
        return
    touched = {action.symbol for action in plan.actions}
    client.expect_open_orders(hint.open_orders)
    client.read_market_ahead(stats=[symbol for symbol in hint.market_stats if symbol in touched])


async def _open_orders(client: LevretClient, symbols: frozenset[str] | None) -> list[Order]:
    """The open orders of `symbols` (all if None): one symbol's by the exchange's filter, a
    few symbols' from the whole listing, reading only theirs."""
    if symbols is not None and len(symbols) == 1:
        (symbol,) = symbols
        return [order async for order in client.iter_open_orders(symbol)]
    return [order async for order in client.iter_open_orders(of_symbols=symbols)]


async def _positions(client: LevretClient, symbols: frozenset[str] | None) -> list[Position]:
    if symbols is not None and len(symbols) == 1:
        (symbol,) = symbols
        return await client.positions(symbol)
    return await client.positions()


async def _specs(client: LevretClient) -> list[SymbolSpec]:
    return await client.supported_symbols()


async def read_snapshot(
    client: LevretClient,
    desired: DesiredState,
    *,
    symbols: Iterable[str] | None = None,
    books: bool = True,
) -> Snapshot:
    """The account as the plan for `desired` needs it; `symbols` narrows every read.

    `books=False` leaves out the book tops: only the planner's crossing check reads them, so
    a read that is not planned from (apply's freshness read before its first call, which
    compares positions, orders and marks with the plan's) skips a request per symbol that
    places an order."""
    wanted = frozenset(symbols) if symbols is not None else None
    reads = needs(desired)
    try:
        async with asyncio.TaskGroup() as group:
            specs_task = group.create_task(_specs(client))
            positions_task = group.create_task(_positions(client, wanted))
            orders_task = group.create_task(_open_orders(client, wanted))
            overview_task = group.create_task(client.account_overview()) if reads.equity else None
    except ExceptionGroup as failed:
        # Concurrent reads fail together; the caller wants the first cause, as one error
        # of its own kind (an auth refusal, a rate limit), not a group of them.
        raise failed.exceptions[0] from None

    positions = {
        position.symbol: position
        for position in positions_task.result()
        if wanted is None or position.symbol in wanted
    }
    open_orders: dict[str, list[Order]] = {}
    for order in orders_task.result():
        if wanted is None or order.symbol in wanted:
            open_orders.setdefault(order.symbol, []).append(order)

    specs = {spec.symbol: spec for spec in specs_task.result()}
    read = Snapshot(
        user_id=client.user_id,
        specs=specs,
        positions=positions,
        open_orders={symbol: tuple(orders) for symbol, orders in open_orders.items()},
        equity=overview_task.result().equity if overview_task is not None else None,
    )
    placing = symbols_placing_orders(desired, read) & reads.order_symbols
    price_symbols = reads.stats_for(positions) | (placing - frozenset(positions))
    if wanted is not None:
        price_symbols, placing = price_symbols & wanted, placing & wanted
    price_symbols = frozenset(symbol for symbol in price_symbols if symbol in specs)
    placing = frozenset(symbol for symbol in placing if symbol in specs)
    book_symbols = sorted(placing) if books else []
    books_task = asyncio.gather(*(_book_top(client, symbol) for symbol in book_symbols))
    stats_task = asyncio.gather(*(client.market_stats(s) for s in sorted(price_symbols)))
    stats, tops = await asyncio.gather(stats_task, books_task)
    marks: dict[str, Decimal] = {stat.symbol: stat.mark_price for stat in stats}
    tops_by_symbol = {symbol: top for symbol, top in zip(book_symbols, tops, strict=True) if top}
    return read.model_copy(update={"marks": marks, "books": tops_by_symbol})


async def _book_top(client: LevretClient, symbol: str) -> BookTop | None:
    """The best bid and ask, or None where the exchange refuses to show a book."""
    try:
        book = await client.orderbook(symbol, depth=BOOK_DEPTH)
    except (Rejected, InvalidRequest):
        return None
    return BookTop(
        bid=book.bids[0][0] if book.bids else None, ask=book.asks[0][0] if book.asks else None
    )
