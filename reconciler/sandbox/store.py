"""SQLite storage of the sandbox: schema, one shared connection, transactions.

One connection serves every thread, guarded by a re-entrant lock: the HTTP layer calls the
engine from a thread pool, and serialising whole transactions is what makes concurrent
orders add up exactly. Amounts are stored as decimal text, never as REAL, so nothing passes
through a float. Ids come from AUTOINCREMENT, so an id is never handed out twice, not even
after a position is deleted or the sandbox is reset.

Nothing a call does may cost time in proportion to the orders an account holds:
`accounts.order_margin` keeps the sum of the account's resting orders' reserved margin (kept
exact by `Session.save_order`, the one place an order's reservation changes), and the open
orders are indexed on their own, apart from the history of filled and cancelled ones.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "Store"]

SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS symbols (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL UNIQUE,
    base_asset TEXT NOT NULL,
    quote_asset TEXT NOT NULL,
    tick_size TEXT NOT NULL,
    step_size TEXT NOT NULL,
    min_size TEXT NOT NULL,
    max_leverage INTEGER NOT NULL,
    status TEXT NOT NULL,
    mark_price TEXT NOT NULL,
    last_price TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    user_id TEXT PRIMARY KEY,
    deposits TEXT NOT NULL,
    total_fees TEXT NOT NULL,
    realized_pnl TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    order_margin TEXT NOT NULL DEFAULT '0'
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scopes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    size TEXT NOT NULL,
    price TEXT,
    leverage INTEGER NOT NULL,
    reduce_only INTEGER NOT NULL,
    take_profit TEXT,
    stop_loss TEXT,
    status TEXT NOT NULL,
    filled_size TEXT NOT NULL,
    avg_fill_price TEXT,
    reserved_margin TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, symbol);
CREATE INDEX IF NOT EXISTS open_orders_by_user ON orders (user_id, created_at, id)
    WHERE status IN ('open', 'partially_filled');
CREATE INDEX IF NOT EXISTS open_orders_by_user_symbol ON orders (user_id, symbol, created_at, id)
    WHERE status IN ('open', 'partially_filled');
CREATE TABLE IF NOT EXISTS positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    size TEXT NOT NULL,
    entry_price TEXT NOT NULL,
    leverage INTEGER NOT NULL,
    margin TEXT NOT NULL,
    take_profit TEXT,
    stop_loss TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_id, symbol)
);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    size TEXT NOT NULL,
    price TEXT NOT NULL,
    fee TEXT NOT NULL,
    realized_pnl TEXT NOT NULL,
    liquidity TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_by_user ON fills (user_id, timestamp, id);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (order_id, timestamp, id);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    type TEXT NOT NULL,
    amount TEXT NOT NULL,
    balance TEXT NOT NULL,
    symbol TEXT
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (user_id, time, id);
"""

# Tables holding exchange state, in an order that respects their references.
_STATE_TABLES = ("fills", "ledger", "orders", "positions", "api_keys", "accounts", "symbols")


class Store:
    """The database file (or `":memory:"`) and the lock that serialises its transactions.

    `on_commit`, when set, is called (under the lock) after every outermost transaction that
    changed something, with the connection: the read replica (`replica.py`) copies the
    database there. Read-only transactions never call it, so reads cost nothing extra.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._depth = 0
        self._begin = "BEGIN IMMEDIATE"
        self.on_commit: Callable[[sqlite3.Connection], None] | None = None
        if self.path != ":memory:":
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA busy_timeout=5000")
        self._create_schema()

    @classmethod
    def read_only_copy(cls, image: bytes) -> Store:
        """An in-memory, query-only store holding `image` (from `image()`), for replica reads."""
        store = cls.__new__(cls)
        store.path = ":memory:"
        store.lock = threading.RLock()
        connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        store._connection = connection
        store._connection.row_factory = sqlite3.Row
        store._connection.deserialize(image)
        store._connection.execute("PRAGMA query_only=ON")
        store._depth = 0
        store._begin = "BEGIN"  # a query-only connection may not take the write lock
        store.on_commit = None
        return store

    def image(self) -> bytes:
        """The whole database as bytes, loadable by `read_only_copy`."""
        with self.lock:
            data = bytearray(self._connection.serialize())
        # A WAL database says so in its header (bytes 18, 19 = 2); an in-memory copy cannot
        # open in WAL mode, so mark the copy as a rollback-journal database (1).
        if len(data) >= 20:
            data[18] = data[19] = 1
        return bytes(data)

    def _create_schema(self) -> None:
        with self.lock:
            self._connection.executescript(_SCHEMA)
            self._connection.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
            self._migrate()

    def _migrate(self) -> None:
        """Bring a database written by an older sandbox to this schema (indexes: above)."""
        with self.transaction() as connection:
            columns = {row["name"] for row in connection.execute("PRAGMA table_info(accounts)")}
            if "order_margin" not in columns:  # schema 1: sum every account's resting orders
                connection.execute(
                    "ALTER TABLE accounts ADD COLUMN order_margin TEXT NOT NULL DEFAULT '0'"
                )
                totals: dict[str, Decimal] = {}
                for row in connection.execute(
                    "SELECT user_id, reserved_margin FROM orders"
                    " WHERE status IN ('open', 'partially_filled')"
                ):
                    amount = Decimal(row["reserved_margin"])
                    totals[row["user_id"]] = totals.get(row["user_id"], Decimal(0)) + amount
                for user_id, total in totals.items():
                    connection.execute(
                        "UPDATE accounts SET order_margin = ? WHERE user_id = ?",
                        (str(total), user_id),
                    )
            connection.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,)
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block atomically; a nested call becomes a savepoint of the outer one."""
        with self.lock:
            connection = self._connection
            if self._depth:
                savepoint = f"nested_{self._depth}"
                connection.execute(f"SAVEPOINT {savepoint}")
                self._depth += 1
                try:
                    yield connection
                except BaseException:
                    connection.execute(f"ROLLBACK TO {savepoint}")
                    connection.execute(f"RELEASE {savepoint}")
                    raise
                else:
                    connection.execute(f"RELEASE {savepoint}")
                finally:
                    self._depth -= 1
                return
            connection.execute(self._begin)
            self._depth = 1
            changes = connection.total_changes
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            else:
                connection.execute("COMMIT")
            finally:
                self._depth = 0
            if self.on_commit is not None and connection.total_changes != changes:
                self.on_commit(connection)

    def get_meta(self, key: str) -> str | None:
        with self.transaction() as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def wipe(self) -> None:
        """Delete all exchange state but keep the id sequences, so no id is ever reused."""
        with self.transaction() as connection:
            for table in _STATE_TABLES:
                connection.execute(f"DELETE FROM {table}")
            connection.execute("DELETE FROM meta WHERE key != 'schema_version'")

    def close(self) -> None:
        with self.lock:
            self._connection.close()
