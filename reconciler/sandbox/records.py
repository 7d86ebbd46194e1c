"""Rows of the sandbox database as typed records, and their API payloads.

The payload methods are the only place where field names of `docs/levret-api.md` are
spelled, so the REST responses and the stream events cannot drift apart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reconciler.sandbox.accounting import ZERO, liquidation_price, realized_pnl

__all__ = [
    "OPEN_STATUSES",
    "AccountRecord",
    "OrderRecord",
    "PositionRecord",
    "SymbolRecord",
    "fill_payload",
    "ledger_payload",
]

OPEN_STATUSES = ("open", "partially_filled")


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def text(value: Decimal | None) -> str | None:
    """Storage form of an amount: exact decimal text."""
    return None if value is None else str(value)


@dataclass
class SymbolRecord:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_size: Decimal
    max_leverage: int
    status: str
    mark_price: Decimal
    last_price: Decimal

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SymbolRecord:
        return cls(
            symbol=row["symbol"],
            base_asset=row["base_asset"],
            quote_asset=row["quote_asset"],
            tick_size=_decimal(row["tick_size"]),
            step_size=_decimal(row["step_size"]),
            min_size=_decimal(row["min_size"]),
            max_leverage=int(row["max_leverage"]),
            status=row["status"],
            mark_price=_decimal(row["mark_price"]),
            last_price=_decimal(row["last_price"]),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "baseAsset": self.base_asset,
            "quoteAsset": self.quote_asset,
            "tickSize": self.tick_size,
            "stepSize": self.step_size,
            "minSize": self.min_size,
            "maxLeverage": self.max_leverage,
            "status": self.status,
        }


@dataclass
class AccountRecord:
    user_id: str
    deposits: Decimal
    total_fees: Decimal
    realized_pnl: Decimal

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AccountRecord:
        return cls(
            user_id=row["user_id"],
            deposits=_decimal(row["deposits"]),
            total_fees=_decimal(row["total_fees"]),
            realized_pnl=_decimal(row["realized_pnl"]),
        )

    @property
    def wallet_balance(self) -> Decimal:
        return self.deposits - self.total_fees + self.realized_pnl


@dataclass
class OrderRecord:
    id: int
    user_id: str
    symbol: str
    side: str
    order_type: str
    size: Decimal
    price: Decimal | None
    leverage: int
    reduce_only: bool
    take_profit: Decimal | None
    stop_loss: Decimal | None
    status: str
    filled_size: Decimal
    avg_fill_price: Decimal | None
    reserved_margin: Decimal
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> OrderRecord:
        return cls(
            id=int(row["id"]),
            user_id=row["user_id"],
            symbol=row["symbol"],
            side=row["side"],
            order_type=row["order_type"],
            size=_decimal(row["size"]),
            price=_optional_decimal(row["price"]),
            leverage=int(row["leverage"]),
            reduce_only=bool(row["reduce_only"]),
            take_profit=_optional_decimal(row["take_profit"]),
            stop_loss=_optional_decimal(row["stop_loss"]),
            status=row["status"],
            filled_size=_decimal(row["filled_size"]),
            avg_fill_price=_optional_decimal(row["avg_fill_price"]),
            reserved_margin=_decimal(row["reserved_margin"]),
            created_at=int(row["created_at"]),
            updated_at=int(row["updated_at"]),
        )

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filled_size

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "userId": self.user_id,
            "symbol": self.symbol,
            "side": self.side,
            "orderType": self.order_type,
            "size": self.size,
            "price": self.price,
            "leverage": self.leverage,
            "reduce_only": self.reduce_only,
            "takeProfit": self.take_profit,
            "stopLoss": self.stop_loss,
            "status": self.status,
            "filledSize": self.filled_size,
            "avgFillPrice": self.avg_fill_price,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass
class PositionRecord:
    id: int
    user_id: str
    symbol: str
    side: str
    size: Decimal
    entry_price: Decimal
    leverage: int
    margin: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PositionRecord:
        return cls(
            id=int(row["id"]),
            user_id=row["user_id"],
            symbol=row["symbol"],
            side=row["side"],
            size=_decimal(row["size"]),
            entry_price=_decimal(row["entry_price"]),
            leverage=int(row["leverage"]),
            margin=_decimal(row["margin"]),
            take_profit=_optional_decimal(row["take_profit"]),
            stop_loss=_optional_decimal(row["stop_loss"]),
            created_at=int(row["created_at"]),
            updated_at=int(row["updated_at"]),
        )

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return realized_pnl(self.side, self.entry_price, mark, self.size) if self.size else ZERO

    def liquidation_price(self, maintenance_rate: Decimal) -> Decimal | None:
        return liquidation_price(
            self.side, self.entry_price, self.size, self.margin, maintenance_rate
        )

    def payload(self, mark: Decimal, maintenance_rate: Decimal) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "userId": self.user_id,
            "symbol": self.symbol,
            "side": self.side,
            "size": self.size,
            "entryPrice": self.entry_price,
            "markPrice": mark,
            "leverage": self.leverage,
            "margin": self.margin,
            "marginMode": "isolated",
            "takeProfitPrice": self.take_profit,
            "stopLossPrice": self.stop_loss,
            "liquidationPrice": self.liquidation_price(maintenance_rate),
            "unrealizedPnl": self.unrealized_pnl(mark),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


def fill_payload(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "orderId": str(row["order_id"]),
        "symbol": row["symbol"],
        "side": row["side"],
        "size": _decimal(row["size"]),
        "price": _decimal(row["price"]),
        "fee": _decimal(row["fee"]),
        "realizedPnl": _decimal(row["realized_pnl"]),
        "liquidity": row["liquidity"],
        "timestamp": int(row["timestamp"]),
    }


def ledger_payload(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "time": int(row["time"]),
        "type": row["type"],
        "amount": _decimal(row["amount"]),
        "balance": _decimal(row["balance"]),
        "symbol": row["symbol"],
    }
