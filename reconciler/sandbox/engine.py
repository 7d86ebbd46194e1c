"""The sandbox's trading engine: the Levret API's behaviour over a SQLite store.

Every public method is one transaction under the store's lock, so the HTTP layer may call
from many threads and each request is all-or-nothing: a `Rejection` raised anywhere inside
rolls back what the request had already changed. Stream events are queued only when the
transaction commits, and not at all with `stream_events=False` (a copy nobody can subscribe
to, such as a rehearsal's). Each commit's account and market snapshots (`accountData`,
`marketData`) are read only while `listening()` says someone is subscribed: they cost a read
of every position of the account per write, a sixth of the server's time in an apply. The
one exception is `cached_key`: the API keys `lookup_key` has read, kept in memory so that a
signature check needs neither the lock nor a thread, forgotten whenever a key may change.
The rules themselves are documented for users in `docs/sandbox.md`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from reconciler.sandbox import matching
from reconciler.sandbox.accounting import (
    ZERO,
    initial_margin,
    money,
)
from reconciler.sandbox.keys import ApiKey, KeyRing, insert_key, read_key
from reconciler.sandbox.marketdata import INTERVAL_MS, candles, synthetic_ladder
from reconciler.sandbox.placement import check_take_profit_stop_loss, place_order
from reconciler.sandbox.records import (
    OrderRecord,
    PositionRecord,
    SymbolRecord,
    fill_payload,
    ledger_payload,
)
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.restore import restore_account
from reconciler.sandbox.session import Event, Session
from reconciler.sandbox.store import Store
from reconciler.sandbox.terms import TradingConfig
from reconciler.sandbox.validation import Body, check_page, invalid

__all__ = ["ApiKey", "Exchange", "Rejection", "TradingConfig"]

MAX_LEVERAGE = 125
MAX_BOOK_DEPTH = 500
MAX_CANDLES = 1000
MAX_HISTORY_DAYS = 365
_DAY_MS = 86_400_000

_SYMBOL_FIELDS = frozenset(
    {
        "symbol",
        "baseAsset",
        "quoteAsset",
        "tickSize",
        "stepSize",
        "minSize",
        "maxLeverage",
        "markPrice",
        "status",
    }
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _would_liquidate(position: PositionRecord, mark: Decimal, rate: Decimal) -> bool:
    threshold = position.liquidation_price(rate)
    if threshold is None:
        return False
    return mark <= threshold if position.side == "long" else mark >= threshold


def _always() -> bool:
    return True


class Exchange:
    """The Levret API over one store; see the module docstring for the concurrency model."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], int] = wall_clock_ms,
        config: TradingConfig | None = None,
        seeder: Callable[[Exchange], None] | None = None,
        stream_events: bool = True,
    ) -> None:
        self.store = store
        self.stream_events = stream_events
        # Whether anyone would receive the commits' snapshots; the app asks its stream.
        self.listening: Callable[[], bool] = _always
        self.clock = clock
        self.config = config if config is not None else TradingConfig()
        # What `reset` reseeds with; None means the demo state.
        self.seeder = seeder
        self._session: Session | None = None
        self._events: list[Event] = []
        self._keys = KeyRing()  # see keys.py

    # construction

    @classmethod
    def open(
        cls,
        path: str | Path,
        clock: Callable[[], int] = wall_clock_ms,
        config: TradingConfig | None = None,
    ) -> Exchange:
        """The exchange in `path`, seeded with the demo state only if the database is new."""
        exchange = cls(Store(path), clock, config)
        exchange.seed_if_new()
        return exchange

    @classmethod
    def with_symbols(
        cls,
        specs: list[dict[str, Any]],
        clock: Callable[[], int] = wall_clock_ms,
        config: TradingConfig | None = None,
        path: str | Path = ":memory:",
        stream_events: bool = True,
    ) -> Exchange:
        """An exchange with just these symbols and no accounts, for tests and models."""

        def seed_symbols(exchange: Exchange) -> None:
            exchange.add_symbols(specs)

        exchange = cls(Store(path), clock, config, seed_symbols, stream_events)
        exchange.seed_if_new()
        return exchange

    def seed_if_new(self) -> bool:
        """Seed once per database, so a restart keeps every account, order and fill."""
        with self._unit():
            if self.store.get_meta("seeded") is not None:
                return False
            self._seed()
            return True

    def _seed(self) -> None:
        if self.seeder is None:
            from reconciler.sandbox.seed import seed_demo  # seed.py builds on this module

            seed_demo(self)
        else:
            self.seeder(self)
        self.store.set_meta("seeded", "yes")

    @contextmanager
    def _unit(self) -> Iterator[Session]:
        """The session of the current call; a call made inside another joins its transaction."""
        with self.store.lock:
            outer = self._session
            with self.store.transaction() as connection:
                if outer is not None:
                    queued = len(outer.events)
                    try:
                        yield outer
                    except BaseException:
                        del outer.events[queued:]
                        raise
                    return
                session = Session(connection, self.clock(), self.config)
                self._session = session
                try:
                    yield session
                    events = (
                        session.closing_events(snapshots=self.listening())
                        if self.stream_events
                        else []
                    )
                finally:
                    self._session = None
            self._events.extend(events)

    # public market data

    def supported_symbols(self) -> list[dict[str, Any]]:
        with self._unit() as session:
            return [spec.payload() for spec in session.all_symbols()]

    def market_stats(self, symbol: str | None) -> dict[str, Any] | list[dict[str, Any]]:
        with self._unit() as session:
            if symbol is None:
                return [session.stats(spec) for spec in session.all_symbols()]
            return session.stats(session.require_symbol(symbol))

    def orderbook(self, symbol: str, depth: int) -> dict[str, Any]:
        if not 1 <= depth <= MAX_BOOK_DEPTH:
            raise invalid(f"depth must be between 1 and {MAX_BOOK_DEPTH}")
        with self._unit() as session:
            spec = session.require_symbol(symbol)
            resting: dict[str, dict[Decimal, Decimal]] = {"buy": {}, "sell": {}}
            for order in session.resting_orders(symbol):
                assert order.price is not None
                side = resting[order.side]
                side[order.price] = side.get(order.price, ZERO) + order.remaining
            synthetic_bids, synthetic_asks = synthetic_ladder(spec, depth)
            # Keep the book uncrossed when a partly filled order rests beyond the mark.
            best_user_bid = max(resting["buy"], default=None)
            best_user_ask = min(resting["sell"], default=None)
            bids = dict(resting["buy"])
            for price, size in synthetic_bids:
                if best_user_ask is None or price < best_user_ask:
                    bids[price] = bids.get(price, ZERO) + size
            asks = dict(resting["sell"])
            for price, size in synthetic_asks:
                if best_user_bid is None or price > best_user_bid:
                    asks[price] = asks.get(price, ZERO) + size
            return {
                "symbol": symbol,
                "bids": [[price, bids[price]] for price in sorted(bids, reverse=True)[:depth]],
                "asks": [[price, asks[price]] for price in sorted(asks)[:depth]],
                "timestamp": session.now,
            }

    def candles(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        if interval not in INTERVAL_MS:
            raise invalid(f"interval must be one of {', '.join(INTERVAL_MS)}")
        if not 1 <= limit <= MAX_CANDLES:
            raise invalid(f"limit must be between 1 and {MAX_CANDLES}")
        with self._unit() as session:
            return candles(session.require_symbol(symbol), interval, limit, session.now)

    # orders

    def place_order(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            return place_order(session, user_id, body).payload()

    def open_orders(
        self,
        user_id: str,
        symbol: str | None,
        page: int,
        page_size: int,
        start: int | None,
        end: int | None,
    ) -> dict[str, Any]:
        check_page(page, page_size)
        with self._unit() as session:
            conditions, parameters = self._owned(session, user_id, symbol)
            conditions.append("status IN ('open', 'partially_filled')")
            rows, total = session.page(
                "orders", "created_at", conditions, parameters, page, page_size, start, end
            )
            items = [OrderRecord.from_row(row).payload() for row in rows]
            return _page(items, page, page_size, total)

    def get_order(self, user_id: str, order_id: str) -> dict[str, Any]:
        with self._unit() as session:
            return self._own_order(session, user_id, order_id).payload()

    def cancel_order(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            request = Body(body, frozenset({"orderId", "userId"}), user_id)
            order = self._own_order(session, user_id, request.text("orderId"))
            if not order.is_open:
                raise Rejection("ORDER_NOT_OPEN", f"order {order.id} is {order.status}")
            matching.cancel(session, order)
            return order.payload()

    def cancel_all(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            request = Body(body, frozenset({"userId", "symbol"}), user_id)
            symbol = request.optional_text("symbol")
            if symbol is not None:
                self._filter_symbol(session, symbol)
            cancelled: list[str] = []
            for order in session.open_orders(user_id, symbol):
                matching.cancel(session, order)
                cancelled.append(str(order.id))
            return {"cancelled": cancelled, "count": len(cancelled)}

    @staticmethod
    def _own_order(session: Session, user_id: str, order_id: str) -> OrderRecord:
        order = session.order(order_id)
        if order is None or order.user_id != user_id:
            raise Rejection("NOT_FOUND", f"no order {order_id!r}")
        return order

    @staticmethod
    def _filter_symbol(session: Session, symbol: str) -> None:
        if session.symbol(symbol) is None:
            raise invalid(f"unknown symbol {symbol!r}")

    @classmethod
    def _owned(
        cls, session: Session, user_id: str, symbol: str | None
    ) -> tuple[list[str], list[Any]]:
        """SQL conditions for one user's rows, narrowed to a known `symbol` when given."""
        conditions, parameters = ["user_id = ?"], [user_id]
        if symbol is not None:
            cls._filter_symbol(session, symbol)
            conditions.append("symbol = ?")
            parameters.append(symbol)
        return conditions, parameters

    # positions

    def positions(self, user_id: str, symbol: str | None) -> list[dict[str, Any]]:
        with self._unit() as session:
            if symbol is not None:
                self._filter_symbol(session, symbol)
            return [
                self._position_payload(session, position)
                for position in session.positions(user_id, symbol)
            ]

    def _position_payload(self, session: Session, position: PositionRecord) -> dict[str, Any]:
        mark = session.mark(position.symbol)
        return position.payload(mark, self.config.maintenance_margin_rate)

    def set_leverage(self, user_id: str, position_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            request = Body(body, frozenset({"leverage", "userId"}), user_id)
            leverage = request.integer("leverage")
            position = session.position_by_id(user_id, position_id)
            spec = session.require_symbol(position.symbol)
            if not 1 <= leverage <= spec.max_leverage:
                raise invalid(f"leverage must be between 1 and {spec.max_leverage}")
            margin = initial_margin(position.entry_price, position.size, leverage)
            if margin - position.margin > session.available_balance(user_id):
                raise Rejection("INSUFFICIENT_MARGIN", "not enough available balance")
            position.leverage = leverage
            position.margin = margin
            self._refuse_instant_liquidation(session, position)
            session.save_position(position)
            return self._position_payload(session, position)

    def adjust_margin(self, user_id: str, position_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            request = Body(body, frozenset({"mode", "amount", "userId"}), user_id)
            mode = request.choice("mode", ("add", "reduce"))
            amount = request.positive("amount")
            if money(amount) != amount:
                raise invalid("amount may have at most 8 decimal places")
            position = session.position_by_id(user_id, position_id)
            if mode == "add":
                if amount > session.available_balance(user_id):
                    raise Rejection("INSUFFICIENT_MARGIN", "not enough available balance")
                position.margin += amount
            else:
                required = initial_margin(position.entry_price, position.size, position.leverage)
                if position.margin - amount < required:
                    raise Rejection(
                        "INSUFFICIENT_MARGIN", f"margin may not go below the initial {required}"
                    )
                position.margin -= amount
                self._refuse_instant_liquidation(session, position)
            session.save_position(position)
            return self._position_payload(session, position)

    def _refuse_instant_liquidation(self, session: Session, position: PositionRecord) -> None:
        mark = session.mark(position.symbol)
        if _would_liquidate(position, mark, self.config.maintenance_margin_rate):
            raise Rejection(
                "INSUFFICIENT_MARGIN", "the position would be liquidated at the current mark"
            )

    def set_tpsl(self, user_id: str, position_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._unit() as session:
            request = Body(body, frozenset({"takeProfitPrice", "stopLossPrice", "userId"}), user_id)
            position = session.position_by_id(user_id, position_id)
            tick = session.require_symbol(position.symbol).tick_size
            if request.has("takeProfitPrice"):
                position.take_profit = request.optional_positive("takeProfitPrice", tick)
            if request.has("stopLossPrice"):
                position.stop_loss = request.optional_positive("stopLossPrice", tick)
            check_take_profit_stop_loss(
                position.side,
                position.take_profit,
                position.stop_loss,
                ("takeProfitPrice", "stopLossPrice"),
            )
            session.save_position(position)
            return self._position_payload(session, position)

    def close_position(self, user_id: str, position_id: str) -> dict[str, Any]:
        with self._unit() as session:
            position = session.position_by_id(user_id, position_id)
            return matching.market_close(session, position).payload()

    # wallet and trades

    def account_overview(self, user_id: str) -> dict[str, Any]:
        with self._unit() as session:
            return session.overview(user_id)

    def balance_history(self, user_id: str, days: int) -> list[dict[str, Any]]:
        if not 1 <= days <= MAX_HISTORY_DAYS:
            raise invalid(f"days must be between 1 and {MAX_HISTORY_DAYS}")
        with self._unit() as session:
            session.require_account(user_id)
            rows = session.execute(
                "SELECT * FROM ledger WHERE user_id = ? AND time >= ? ORDER BY time, id",
                (user_id, session.now - days * _DAY_MS),
            ).fetchall()
            return [ledger_payload(row) for row in rows]

    def user_trades(
        self,
        user_id: str,
        symbol: str | None,
        page: int,
        page_size: int,
        start: int | None,
        end: int | None,
    ) -> dict[str, Any]:
        check_page(page, page_size)
        with self._unit() as session:
            conditions, parameters = self._owned(session, user_id, symbol)
            rows, total = session.page(
                "fills", "timestamp", conditions, parameters, page, page_size, start, end
            )
            return _page([fill_payload(row) for row in rows], page, page_size, total)

    def order_trades(
        self,
        user_id: str,
        order_id: str,
        page: int,
        page_size: int,
        start: int | None,
        end: int | None,
    ) -> dict[str, Any]:
        check_page(page, page_size)
        with self._unit() as session:
            order = self._own_order(session, user_id, order_id)
            rows, total = session.page(
                "fills",
                "timestamp",
                ["order_id = ?"],
                [order.id],
                page,
                page_size,
                start,
                end,
            )
            return _page([fill_payload(row) for row in rows], page, page_size, total)

    # control (sandbox only)

    def cached_key(self, key_id: str) -> tuple[bool, ApiKey | None]:
        """What `lookup_key` last answered for `key_id`, if the keys have not changed since:
        (True, key or None), else (False, None). Lock-free, for the event loop."""
        return self._keys.cached(key_id)

    def lookup_key(self, key_id: str) -> ApiKey | None:
        with self.store.lock:
            outermost = self._session is None
            with self._unit() as session:
                key = read_key(session, key_id)
                if outermost:  # inside another call it could still be rolled back
                    self._keys.remember(key_id, key)
                return key

    def set_prices(self, prices: dict[str, Decimal]) -> dict[str, Any]:
        """Move marks, then fill crossed orders, trigger TP/SL and liquidate, per symbol."""
        with self._unit() as session:
            filled: list[str] = []
            triggered: list[str] = []
            liquidated: list[str] = []
            for name, value in prices.items():
                session.require_symbol(name)
                if isinstance(value, bool) or not isinstance(value, int | Decimal) or value <= 0:
                    raise invalid(f"price of {name} must be a positive number")
                session.set_prices(name, Decimal(value), Decimal(value))
                spec = session.require_symbol(name)
                filled += matching.fill_crossed_orders(session, spec)
                triggered += matching.trigger_take_profit_stop_loss(session, spec)
                liquidated += matching.liquidate(session, spec)
                for position in session.positions_on(name):
                    session.emit_position(position)
            return {
                "marks": {name: session.mark(name) for name in prices},
                "filledOrders": filled,
                "triggeredPositions": triggered,
                "liquidatedPositions": liquidated,
            }

    def create_account(
        self, user_id: str, key_id: str, secret: str, scopes: Collection[str], balance: Decimal
    ) -> dict[str, Any]:
        with self._unit() as session:
            if not user_id or not isinstance(user_id, str):
                raise invalid("userId must be a non-empty string")
            if session.account(user_id) is not None:
                raise invalid(f"user {user_id!r} already exists")
            if isinstance(balance, bool) or not isinstance(balance, int | Decimal) or balance < 0:
                raise invalid("balance must be a number, at least 0")
            session.execute(
                "INSERT INTO accounts (user_id, deposits, total_fees, realized_pnl, created_at)"
                " VALUES (?, '0', '0', '0', ?)",
                (user_id, session.now),
            )
            key = self.add_api_key(user_id, key_id, secret, scopes)
            if balance > 0:
                session.book(user_id, "deposit", money(Decimal(balance)), None)
            session.touched_users[user_id] = None
            return {**key, "account": session.overview(user_id)}

    def add_api_key(
        self, user_id: str, key_id: str, secret: str, scopes: Collection[str]
    ) -> dict[str, Any]:
        """Another key for an existing user, e.g. a read-only one."""
        with self._unit() as session:
            self._keys.forget()
            ordered = insert_key(session, user_id, key_id, secret, scopes)
            return {"userId": user_id, "keyId": key_id, "scopes": ordered}

    def restore_account(
        self,
        user_id: str,
        available: Decimal,
        positions: list[dict[str, Any]],
        orders: list[dict[str, Any]],
    ) -> dict[str, str]:
        """Copy in an account as it stands elsewhere (see `restore`): live ids to the copy's."""
        with self._unit() as session:
            return restore_account(session, user_id, available, positions, orders)

    def deposit(self, user_id: str, amount: Decimal) -> dict[str, Any]:
        """Credit the wallet; the ledger records it as a deposit."""
        with self._unit() as session:
            if isinstance(amount, bool) or not isinstance(amount, int | Decimal) or amount <= 0:
                raise invalid("amount must be a positive number")
            if money(Decimal(amount)) != amount:
                raise invalid("amount may have at most 8 decimal places")
            session.book(user_id, "deposit", Decimal(amount), None)
            return session.overview(user_id)

    def add_symbols(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add symbols, or replace the spec and mark of ones that exist."""
        with self._unit() as session:
            added: list[dict[str, Any]] = []
            for raw in specs:
                spec = self._symbol_from_spec(raw)
                session.save_symbol(spec)
                added.append(spec.payload())
            return added

    @staticmethod
    def _symbol_from_spec(raw: object) -> SymbolRecord:
        request = Body(raw, _SYMBOL_FIELDS)
        name = request.text("symbol")
        base, _, quote = name.partition("_")
        tick = request.positive("tickSize")
        step = request.positive("stepSize")
        min_size = request.positive("minSize", step)
        max_leverage = request.integer("maxLeverage")
        if not 1 <= max_leverage <= MAX_LEVERAGE:
            raise invalid(f"maxLeverage must be between 1 and {MAX_LEVERAGE}")
        mark = request.positive("markPrice")
        status = request.optional_text("status") or "trading"
        if status not in ("trading", "halted"):
            raise invalid("status must be trading or halted")
        return SymbolRecord(
            symbol=name,
            base_asset=request.optional_text("baseAsset") or base,
            quote_asset=request.optional_text("quoteAsset") or quote or "USDT",
            tick_size=tick,
            step_size=step,
            min_size=min_size,
            max_leverage=max_leverage,
            status=status,
            mark_price=mark,
            last_price=mark,
        )

    def reset(self) -> None:
        """Wipe every account, order, position and fill and reseed; ids keep increasing."""
        with self._unit() as session:
            self._keys.forget()
            self.store.wipe()
            self.config.restore_defaults()
            session.events.clear()
            session.touched_users.clear()
            session.touched_symbols.clear()
            self._seed()

    def drain_events(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        with self.store.lock:
            events, self._events = self._events, []
            return events


def _page(items: list[dict[str, Any]], page: int, page_size: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "pageSize": page_size, "total": total}
