"""What the planner knows about the live account: a pure, frozen value, plus what to read.

The reader (IO, elsewhere) fills a `Snapshot` from the exchange; the planner only reads it.
`needs(desired)` says which reads a plan requires, so the reader does no more than that:

- symbol specs, all positions and all open orders: always (one call, one call, pages);
- a mark price (`/market/market-stats`) only for a symbol whose desired position is not flat
  (to turn `notional`/`weight` into a size, to estimate what a new position costs for the
  policy caps and the margin it will hold) **and** that has no open position: an open
  position carries its own `markPrice`, which the planner uses instead;
- the account overview only when some position is sized by `weight` (it needs equity).

Fingerprints cover only what the plan was computed from and what a change to would make
the plan wrong: position side/size/entry/leverage/margin/TP/SL and each open order's
identity and remaining size. Volatile values (mark price, unrealised PnL, liquidation price,
update times) are left out on purpose: a mark that moves every second would make every saved
plan stale at once. Apply checks the moved mark separately against `Plan.marks`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reconciler.exchange.models import Order, Position, SymbolSpec
from reconciler.jsonnum import dumps
from reconciler.spec import DesiredState

__all__ = ["ReadNeeds", "Snapshot", "needs", "snapshot_from_data"]


class Snapshot(BaseModel):
    """The live account as read at one moment. `marks` holds only symbols that needed one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    specs: dict[str, SymbolSpec]
    positions: dict[str, Position] = Field(default_factory=dict)
    open_orders: dict[str, tuple[Order, ...]] = Field(default_factory=dict)
    marks: dict[str, Decimal] = Field(default_factory=dict)
    equity: Decimal | None = None

    def mark(self, symbol: str) -> Decimal | None:
        """The price to value a symbol at: a read mark, else the open position's mark."""
        if symbol in self.marks:
            return self.marks[symbol]
        position = self.positions.get(symbol)
        return position.markPrice if position is not None else None

    def orders(self, symbol: str) -> tuple[Order, ...]:
        return self.open_orders.get(symbol, ())

    def live_symbols(self) -> set[str]:
        """Symbols with an open position or at least one open order."""
        return set(self.positions) | {s for s, orders in self.open_orders.items() if orders}

    def symbol_fingerprint(self, symbol: str) -> str:
        return _sha256(self._symbol_facts(symbol))

    def fingerprint(self) -> str:
        """One hash of every symbol's facts and the equity the plan may have used."""
        symbols = sorted(self.live_symbols())
        facts = {
            "user_id": self.user_id,
            "symbols": {symbol: self.symbol_fingerprint(symbol) for symbol in symbols},
            "equity": self.equity,
        }
        return _sha256(facts)

    def _symbol_facts(self, symbol: str) -> dict[str, Any]:
        position = self.positions.get(symbol)
        orders = sorted(self.orders(symbol), key=lambda order: order.id)
        return {
            "symbol": symbol,
            "position": _position_facts(position) if position is not None else None,
            "orders": [_order_facts(order) for order in orders],
        }


def _position_facts(position: Position) -> dict[str, Any]:
    return {
        "id": position.id,
        "side": position.side,
        "size": position.size,
        "entryPrice": position.entryPrice,
        "leverage": position.leverage,
        "margin": position.margin,
        "takeProfitPrice": position.takeProfitPrice,
        "stopLossPrice": position.stopLossPrice,
    }


def _order_facts(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "side": order.side,
        "orderType": order.orderType,
        "price": order.price,
        "size": order.size,
        "filledSize": order.filledSize,
        "leverage": order.leverage,
        "reduce_only": order.reduce_only,
        "takeProfit": order.takeProfit,
        "stopLoss": order.stopLoss,
    }


def _sha256(value: Any) -> str:
    return hashlib.sha256(dumps(_canonical(value))).hexdigest()


def _canonical(value: Any) -> Any:
    """Sorted keys, normalised decimals: equal facts hash equal whatever their spelling."""
    if isinstance(value, dict):
        return {str(key): _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Decimal):
        return value.normalize() if value != 0 else Decimal(0)
    return value


class ReadNeeds(BaseModel):
    """Which reads a plan needs beyond specs, positions and open orders (always read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price_symbols: frozenset[str] = frozenset()
    equity: bool = False

    def stats_for(self, positions: Iterable[str]) -> frozenset[str]:
        """Symbols to read market stats for, given the symbols that have an open position."""
        return self.price_symbols - frozenset(positions)


def needs(desired: DesiredState) -> ReadNeeds:
    """The reads `plan(desired, ...)` needs; see the module docstring for why each."""
    price_symbols = frozenset(
        symbol
        for symbol, entry in desired.symbols.items()
        if entry.position is not None and entry.position.side != "flat"
    )
    uses_weight = any(
        entry.position is not None and entry.position.weight is not None
        for entry in desired.symbols.values()
    )
    return ReadNeeds(price_symbols=price_symbols, equity=uses_weight)


def snapshot_from_data(data: Any) -> Snapshot:
    """A snapshot from plain data shaped like the API's payloads (the goldens' `live.json`).

    `{"user_id", "specs": [spec...], "positions": [position...], "open_orders": [order...],
    "marks": {symbol: price}, "equity": number|null}`: lists as the exchange returns them,
    grouped here by symbol.
    """
    if not isinstance(data, dict):
        raise ValueError("a snapshot must be a JSON object")
    specs = [SymbolSpec.model_validate(item) for item in data.get("specs", [])]
    positions = [Position.model_validate(item) for item in data.get("positions", [])]
    orders: dict[str, list[Order]] = {}
    for item in data.get("open_orders", []):
        order = Order.model_validate(item)
        orders.setdefault(order.symbol, []).append(order)
    return Snapshot(
        user_id=str(data["user_id"]),
        specs={spec.symbol: spec for spec in specs},
        positions={position.symbol: position for position in positions},
        open_orders={symbol: tuple(items) for symbol, items in orders.items()},
        marks={str(k): Decimal(v) for k, v in (data.get("marks") or {}).items()},
        equity=Decimal(data["equity"]) if data.get("equity") is not None else None,
    )
