"""What the planner knows about the live account: a pure, frozen value, plus what to read.

The reader (IO, elsewhere) fills a `Snapshot` from the exchange; the planner only reads it.
`needs(desired)` says which reads a plan requires, so the reader does no more than that:

- symbol specs, all positions and all open orders: always (one call, one call, pages);
- a mark price (the symbol's market stats) only for a symbol whose desired position is not flat
  (to turn `notional`/`weight` into a size, to estimate what a new position costs for the
  policy caps and the margin it will hold, to check its TP/SL against it), or where the plan
  will place a resting order (to refuse one that would fill at once), **and** that has no
  open position: an open position carries its own `mark_price`, which the planner uses
  instead;
- the top of the book (depth 1) where the plan will place a resting
  order; where the exchange offers no book, the mark alone is the reference;
- the account overview only when some position is sized by `weight` (it needs equity).

Fingerprints cover only what the plan was computed from and what a change to would make
the plan wrong: position side/size/entry/leverage/margin/TP/SL and each open order's
identity and remaining size. Volatile values (mark price, unrealised PnL, liquidation price,
update times) are left out on purpose: a mark that moves every second would make every saved
plan stale at once. Apply checks the moved mark separately against `Plan.marks`.

A fingerprint is the SHA-256 of canonical JSON: sorted keys, no spaces, a position or an order
as a fixed array of its facts, every decimal as the text of its normalised value (so `0.10`
and `0.1` hash the same). Each symbol's is computed
once per snapshot (a snapshot is frozen) and cached; `fingerprint()` hashes those.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import cached_property
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.account import Order, Position, SymbolSpec
from reconciler.model.desired import DesiredState

__all__ = ["BookTop", "ReadNeeds", "Snapshot", "needs"]


class BookTop(BaseModel):
    """The best bid and ask of a symbol's order book (None: that side is empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bid: Decimal | None = None
    ask: Decimal | None = None


class Snapshot(BaseModel):
    """The live account as read at one moment. `marks` holds only symbols that needed one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    specs: dict[str, SymbolSpec]
    positions: dict[str, Position] = Field(default_factory=dict)
    open_orders: dict[str, tuple[Order, ...]] = Field(default_factory=dict)
    marks: dict[str, Decimal] = Field(default_factory=dict)
    books: dict[str, BookTop] = Field(default_factory=dict)
    equity: Decimal | None = None

    def mark(self, symbol: str) -> Decimal | None:
        """The price to value a symbol at: a read mark, else the open position's mark."""
        if symbol in self.marks:
            return self.marks[symbol]
        position = self.positions.get(symbol)
        return position.mark_price if position is not None else None

    def orders(self, symbol: str) -> tuple[Order, ...]:
        return self.open_orders.get(symbol, ())

    def live_symbols(self) -> set[str]:
        """Symbols with an open position or at least one open order."""
        return set(self.positions) | {s for s, orders in self.open_orders.items() if orders}

    def symbol_fingerprint(self, symbol: str) -> str:
        hashes = self._symbol_hashes
        if symbol not in hashes:  # neither a position nor an order: the same for every such
            hashes[symbol] = _sha256(self._symbol_facts(symbol))
        return hashes[symbol]

    def fingerprint(self) -> str:
        """One hash of every symbol's facts and the equity the plan may have used."""
        symbols = sorted(self.live_symbols())
        facts = {
            "user_id": self.user_id,
            "symbols": {symbol: self.symbol_fingerprint(symbol) for symbol in symbols},
            "equity": self.equity,
        }
        return _sha256(facts)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; its fingerprints are computed afresh (the update may change the facts)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("_symbol_hashes", None)
        return copied

    @cached_property
    def _symbol_hashes(self) -> dict[str, str]:
        """Each live symbol's fingerprint, computed once (the snapshot is frozen)."""
        return {symbol: _sha256(self._symbol_facts(symbol)) for symbol in self.live_symbols()}

    def _symbol_facts(self, symbol: str) -> dict[str, Any]:
        position = self.positions.get(symbol)
        orders = sorted(self.orders(symbol), key=lambda order: order.id)
        return {
            "symbol": symbol,
            "position": _POSITION_FACTS(position) if position is not None else None,
            "orders": [_ORDER_FACTS(order) for order in orders],
        }


# What a fingerprint covers, in this order: each position and order is hashed as an array of
# these values (a fixed schema is as canonical as sorted keys, and half the work to encode).
_POSITION_FACTS = operator.attrgetter(
    "id",
    "side",
    "size",
    "entry_price",
    "leverage",
    "margin",
    "take_profit_price",
    "stop_loss_price",
)
_ORDER_FACTS = operator.attrgetter(
    "id", "side", "order_type", "price", "size", "filled_size", "leverage", "reduce_only",
    "take_profit", "stop_loss",
)  # fmt: skip


def _decimal(value: Any) -> str:
    """JSON for a decimal: its normalised value as text, so `0.10` and `0.1` hash alike."""
    if isinstance(value, Decimal):
        return str(value.normalize()) if value else "0"
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def _sha256(value: Any) -> str:
    """The hash of canonical JSON (sorted keys, no spaces), written by the C encoder."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_decimal
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ReadNeeds(BaseModel):
    """Which reads a plan needs beyond specs, positions and open orders (always read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price_symbols: frozenset[str] = frozenset()
    order_symbols: frozenset[str] = frozenset()  # a mark and the book where orders go out
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
    order_symbols = frozenset(symbol for symbol, entry in desired.symbols.items() if entry.orders)
    return ReadNeeds(price_symbols=price_symbols, order_symbols=order_symbols, equity=uses_weight)
