"""One engine call's unit of work: the open transaction, its clock reading and its events.

Everything the trading rules read or write goes through a `Session`, so one call sees one
consistent state and one timestamp, and the stream events it queues are published only if
the transaction commits.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconciler.sandbox.accounting import ZERO, money, realized_pnl
from reconciler.sandbox.marketdata import market_stats
from reconciler.sandbox.records import (
    OPEN_STATUSES,
    AccountRecord,
    OrderRecord,
    PositionRecord,
    SymbolRecord,
    text,
)
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.terms import TradingConfig

__all__ = ["Event", "Session"]

Event = tuple[str, str | None, dict[str, Any]]


@dataclass
class Session:
    connection: sqlite3.Connection
    now: int
    config: TradingConfig
    events: list[Event] = field(default_factory=list)
    # Insertion-ordered sets: account and market snapshots are sent once, at commit.
    touched_users: dict[str, None] = field(default_factory=dict)
    touched_symbols: dict[str, None] = field(default_factory=dict)

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.connection.execute(sql, parameters)

    # symbols

    def symbol(self, name: str) -> SymbolRecord | None:
        row = self.execute("SELECT * FROM symbols WHERE symbol = ?", (name,)).fetchone()
        return None if row is None else SymbolRecord.from_row(row)

    def require_symbol(self, name: str) -> SymbolRecord:
        record = self.symbol(name)
        if record is None:
            raise Rejection("NOT_FOUND", f"unknown symbol {name!r}")
        return record

    def all_symbols(self) -> list[SymbolRecord]:
        rows = self.execute("SELECT * FROM symbols ORDER BY seq").fetchall()
        return [SymbolRecord.from_row(row) for row in rows]

    def save_symbol(self, record: SymbolRecord) -> None:
        self.execute(
            "INSERT INTO symbols (symbol, base_asset, quote_asset, tick_size, step_size,"
            " min_size, max_leverage, status, mark_price, last_price)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (symbol) DO UPDATE SET base_asset = excluded.base_asset,"
            " quote_asset = excluded.quote_asset, tick_size = excluded.tick_size,"
            " step_size = excluded.step_size, min_size = excluded.min_size,"
            " max_leverage = excluded.max_leverage, status = excluded.status,"
            " mark_price = excluded.mark_price, last_price = excluded.last_price",
            (
                record.symbol,
                record.base_asset,
                record.quote_asset,
                text(record.tick_size),
                text(record.step_size),
                text(record.min_size),
                record.max_leverage,
                record.status,
                text(record.mark_price),
                text(record.last_price),
            ),
        )
        self.touched_symbols[record.symbol] = None

    def set_prices(self, name: str, mark: Decimal | None, last: Decimal) -> None:
        if mark is None:
            self.execute("UPDATE symbols SET last_price = ? WHERE symbol = ?", (text(last), name))
        else:
            self.execute(
                "UPDATE symbols SET mark_price = ?, last_price = ? WHERE symbol = ?",
                (text(mark), text(last), name),
            )
        self.touched_symbols[name] = None

    def stats(self, record: SymbolRecord) -> dict[str, Any]:
        return market_stats(record, self.now)

    # accounts and ledger

    def account(self, user_id: str) -> AccountRecord | None:
        row = self.execute("SELECT * FROM accounts WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else AccountRecord.from_row(row)

    def require_account(self, user_id: str) -> AccountRecord:
        record = self.account(user_id)
        if record is None:
            raise Rejection("NOT_FOUND", f"unknown user {user_id!r}")
        return record

    def book(self, user_id: str, kind: str, amount: Decimal, symbol: str | None) -> None:
        """Move the wallet by `amount` and write the ledger line behind balance-history."""
        account = self.require_account(user_id)
        if kind == "deposit":
            account.deposits += amount
        elif kind == "fee":
            account.total_fees -= amount
        else:
            account.realized_pnl += amount
        self.execute(
            "UPDATE accounts SET deposits = ?, total_fees = ?, realized_pnl = ? WHERE user_id = ?",
            (
                text(account.deposits),
                text(account.total_fees),
                text(account.realized_pnl),
                user_id,
            ),
        )
        self.execute(
            "INSERT INTO ledger (user_id, time, type, amount, balance, symbol)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, self.now, kind, text(amount), text(account.wallet_balance), symbol),
        )
        self.touched_users[user_id] = None

    def overview(self, user_id: str) -> dict[str, Any]:
        """The account's figures: one read of the account and one of its positions with marks.

        Nothing here reads the orders: their reserved margin is kept summed in the account
        row (`order_margin`, see `save_order`), so an overview costs the same at 10 or 10,000
        resting orders.
        """
        account = self.require_account(user_id)
        position_margin = ZERO
        unrealized = ZERO
        rows = self.execute(
            "SELECT positions.side, positions.size, positions.entry_price, positions.margin,"
            " symbols.mark_price FROM positions"
            " JOIN symbols ON symbols.symbol = positions.symbol WHERE positions.user_id = ?",
            (user_id,),
        ).fetchall()
        for side, size, entry, margin, mark in rows:
            position_margin += Decimal(margin)
            held = Decimal(size)
            if held:  # as `PositionRecord.unrealized_pnl`
                unrealized += realized_pnl(side, Decimal(entry), Decimal(mark), held)
        order_margin = self._order_margin(user_id)
        wallet = account.wallet_balance
        return {
            "userId": user_id,
            "currency": "USDT",
            "deposits": account.deposits,
            "walletBalance": wallet,
            "availableBalance": wallet - position_margin - order_margin,
            "positionMargin": position_margin,
            "orderMargin": order_margin,
            "unrealizedPnl": unrealized,
            "realizedPnl": account.realized_pnl,
            "totalFees": account.total_fees,
            "equity": wallet + unrealized,
        }

    def available_balance(self, user_id: str) -> Decimal:
        """Wallet less position and order margin (the overview's figure, without the marks)."""
        wallet = self.require_account(user_id).wallet_balance
        rows = self.execute("SELECT margin FROM positions WHERE user_id = ?", (user_id,))
        position_margin = sum((Decimal(row["margin"]) for row in rows.fetchall()), ZERO)
        return wallet - position_margin - self._order_margin(user_id)

    def _order_margin(self, user_id: str) -> Decimal:
        row = self.execute(
            "SELECT order_margin FROM accounts WHERE user_id = ?", (user_id,)
        ).fetchone()
        return ZERO if row is None else Decimal(row["order_margin"])

    def _reserve(self, user_id: str, delta: Decimal) -> None:
        """Move the account's summed order margin by the change of one order's reservation."""
        if delta:
            total = self._order_margin(user_id) + delta
            self.execute(
                "UPDATE accounts SET order_margin = ? WHERE user_id = ?", (text(total), user_id)
            )

    def mark(self, symbol: str) -> Decimal:
        row = self.execute("SELECT mark_price FROM symbols WHERE symbol = ?", (symbol,)).fetchone()
        return Decimal(row["mark_price"])

    # orders

    def order(self, order_id: str) -> OrderRecord | None:
        if not order_id.isdigit():
            return None
        row = self.execute("SELECT * FROM orders WHERE id = ?", (int(order_id),)).fetchone()
        return None if row is None else OrderRecord.from_row(row)

    def open_orders(
        self, user_id: str, symbol: str | None, *, reduce_only: bool = False
    ) -> list[OrderRecord]:
        """The user's resting orders, oldest first; `reduce_only`: only those (every order
        placement looks for stale ones, and must not read the whole ladder to find none)."""
        sql = "SELECT * FROM orders WHERE user_id = ? AND status IN ('open', 'partially_filled')"
        parameters: tuple[Any, ...] = (user_id,)
        if symbol is not None:
            sql += " AND symbol = ?"
            parameters += (symbol,)
        if reduce_only:
            sql += " AND reduce_only = 1"
        rows = self.execute(sql + " ORDER BY created_at, id", parameters).fetchall()
        return [OrderRecord.from_row(row) for row in rows]

    def resting_orders(self, symbol: str) -> list[OrderRecord]:
        rows = self.execute(
            "SELECT * FROM orders WHERE symbol = ? AND status IN ('open', 'partially_filled')"
            " ORDER BY id",
            (symbol,),
        ).fetchall()
        return [OrderRecord.from_row(row) for row in rows]

    def insert_order(self, order: OrderRecord) -> OrderRecord:
        cursor = self.execute(
            "INSERT INTO orders (user_id, symbol, side, order_type, size, price, leverage,"
            " reduce_only, take_profit, stop_loss, status, filled_size, avg_fill_price,"
            " reserved_margin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.user_id,
                order.symbol,
                order.side,
                order.order_type,
                text(order.size),
                text(order.price),
                order.leverage,
                int(order.reduce_only),
                text(order.take_profit),
                text(order.stop_loss),
                order.status,
                text(order.filled_size),
                text(order.avg_fill_price),
                text(order.reserved_margin),
                order.created_at,
                order.updated_at,
            ),
        )
        assert cursor.lastrowid is not None
        order.id = cursor.lastrowid
        if order.is_open:
            self._reserve(order.user_id, order.reserved_margin)
        return order

    def save_order(self, order: OrderRecord) -> None:
        """Persist a changed order and queue its `orderUpdate`.

        Every change of an order goes through here, so this is where the account's summed
        order margin follows it: what the order held before (if it was resting) out, what it
        holds now (if it still rests) in.
        """
        before = self.execute(
            "SELECT status, reserved_margin FROM orders WHERE id = ?", (order.id,)
        ).fetchone()
        held = ZERO
        if before is not None and before["status"] in OPEN_STATUSES:
            held = Decimal(before["reserved_margin"])
        holds = order.reserved_margin if order.status in OPEN_STATUSES else ZERO
        self._reserve(order.user_id, holds - held)
        order.updated_at = self.now
        self.execute(
            "UPDATE orders SET status = ?, filled_size = ?, avg_fill_price = ?,"
            " reserved_margin = ?, updated_at = ? WHERE id = ?",
            (
                order.status,
                text(order.filled_size),
                text(order.avg_fill_price),
                text(order.reserved_margin),
                order.updated_at,
                order.id,
            ),
        )
        self.emit_order(order)

    def emit_order(self, order: OrderRecord) -> None:
        self.events.append(("orderUpdate", order.user_id, order.payload()))
        self.touched_users[order.user_id] = None

    # positions

    def position(self, user_id: str, symbol: str) -> PositionRecord | None:
        row = self.execute(
            "SELECT * FROM positions WHERE user_id = ? AND symbol = ?", (user_id, symbol)
        ).fetchone()
        return None if row is None else PositionRecord.from_row(row)

    def position_by_id(self, user_id: str, position_id: str) -> PositionRecord:
        row = None
        if position_id.isdigit():
            row = self.execute(
                "SELECT * FROM positions WHERE id = ? AND user_id = ?",
                (int(position_id), user_id),
            ).fetchone()
        if row is None:
            raise Rejection("NOT_FOUND", f"no open position {position_id!r}")
        return PositionRecord.from_row(row)

    def positions(self, user_id: str, symbol: str | None) -> list[PositionRecord]:
        sql = "SELECT * FROM positions WHERE user_id = ?"
        parameters: tuple[Any, ...] = (user_id,)
        if symbol is not None:
            sql += " AND symbol = ?"
            parameters += (symbol,)
        rows = self.execute(sql + " ORDER BY created_at, id", parameters).fetchall()
        return [PositionRecord.from_row(row) for row in rows]

    def positions_on(self, symbol: str) -> list[PositionRecord]:
        rows = self.execute("SELECT * FROM positions WHERE symbol = ? ORDER BY id", (symbol,))
        return [PositionRecord.from_row(row) for row in rows.fetchall()]

    def insert_position(self, position: PositionRecord) -> PositionRecord:
        cursor = self.execute(
            "INSERT INTO positions (user_id, symbol, side, size, entry_price, leverage, margin,"
            " take_profit, stop_loss, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                position.user_id,
                position.symbol,
                position.side,
                text(position.size),
                text(position.entry_price),
                position.leverage,
                text(position.margin),
                text(position.take_profit),
                text(position.stop_loss),
                position.created_at,
                position.updated_at,
            ),
        )
        assert cursor.lastrowid is not None
        position.id = cursor.lastrowid
        self.emit_position(position)
        return position

    def save_position(self, position: PositionRecord) -> None:
        """Persist a changed position (deleting it once empty) and queue `positionUpdate`."""
        position.updated_at = self.now
        if position.size == 0:
            position.margin = ZERO
            self.execute("DELETE FROM positions WHERE id = ?", (position.id,))
        else:
            self.execute(
                "UPDATE positions SET size = ?, entry_price = ?, leverage = ?, margin = ?,"
                " take_profit = ?, stop_loss = ?, updated_at = ? WHERE id = ?",
                (
                    text(position.size),
                    text(position.entry_price),
                    position.leverage,
                    text(money(position.margin)),
                    text(position.take_profit),
                    text(position.stop_loss),
                    position.updated_at,
                    position.id,
                ),
            )
        self.emit_position(position)

    def emit_position(self, position: PositionRecord) -> None:
        payload = position.payload(self.mark(position.symbol), self.config.maintenance_margin_rate)
        self.events.append(("positionUpdate", position.user_id, payload))
        self.touched_users[position.user_id] = None

    # fills

    def insert_fill(
        self,
        order: OrderRecord,
        size: Decimal,
        price: Decimal,
        fee: Decimal,
        pnl: Decimal,
        liquidity: str,
    ) -> None:
        self.execute(
            "INSERT INTO fills (order_id, user_id, symbol, side, size, price, fee, realized_pnl,"
            " liquidity, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.id,
                order.user_id,
                order.symbol,
                order.side,
                text(size),
                text(price),
                text(fee),
                text(pnl),
                liquidity,
                self.now,
            ),
        )

    def page(
        self,
        table: str,
        time_column: str,
        conditions: list[str],
        parameters: list[Any],
        page: int,
        page_size: int,
        start: int | None,
        end: int | None,
    ) -> tuple[list[sqlite3.Row], int]:
        """One page of rows, oldest first then by id, and the total across all pages."""
        if start is not None:
            conditions = [*conditions, f"{time_column} >= ?"]
            parameters = [*parameters, start]
        if end is not None:
            conditions = [*conditions, f"{time_column} <= ?"]
            parameters = [*parameters, end]
        where = " AND ".join(conditions)
        total = self.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", tuple(parameters))
        count = int(total.fetchone()[0])
        rows = self.execute(
            f"SELECT * FROM {table} WHERE {where} ORDER BY {time_column}, id LIMIT ? OFFSET ?",
            (*parameters, page_size, (page - 1) * page_size),
        ).fetchall()
        return rows, count

    # commit

    def closing_events(self, *, snapshots: bool = True) -> list[Event]:
        """All events of this unit of work, with one account and market snapshot each
        (`snapshots`; they are worth their reads only to someone listening)."""
        events = list(self.events)
        if not snapshots:
            return events
        for user_id in self.touched_users:
            if self.account(user_id) is not None:
                events.append(("accountData", user_id, self.overview(user_id)))
        for name in self.touched_symbols:
            record = self.symbol(name)
            if record is not None:
                events.append(("marketData", None, self.stats(record)))
        return events
