"""Turn a live account into a desired-state document that matches it exactly.

`reconciler import` is how a user adopts an existing account: the file it writes, planned
against the same account, gives an empty plan. Pure: snapshot in, mapping (and YAML) out.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import yaml

from reconciler.jsonnum import decimal_text
from reconciler.model.account import Order, Position
from reconciler.model.snapshot import Snapshot

__all__ = ["desired_document", "dump_yaml"]

DEFAULT_LEVERAGE = 5
_MARGIN_QUANTUM = Decimal("0.01")


def _position_entry(position: Position) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "side": position.side,
        "size": position.size,
        "leverage": position.leverage,
    }
    initial = position.entry_price * position.size / position.leverage
    if abs(position.margin - initial) >= _MARGIN_QUANTUM:
        # Margin was added or reduced by hand: keep it, or the next apply would undo it.
        entry["margin"] = position.margin.quantize(_MARGIN_QUANTUM)
    if position.take_profit_price is not None:
        entry["take_profit"] = position.take_profit_price
    if position.stop_loss_price is not None:
        entry["stop_loss"] = position.stop_loss_price
    return entry


def _order_entry(order: Order, default_leverage: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"side": order.side, "price": order.price, "size": order.remaining}
    if order.leverage is not None and order.leverage != default_leverage:
        entry["leverage"] = order.leverage
    if order.reduce_only:
        entry["reduce_only"] = True
    if order.take_profit is not None:
        entry["take_profit"] = order.take_profit
    if order.stop_loss is not None:
        entry["stop_loss"] = order.stop_loss
    return entry


def desired_document(
    snapshot: Snapshot, symbols: Iterable[str] | None = None, *, leverage: int = DEFAULT_LEVERAGE
) -> dict[str, Any]:
    """A desired-state mapping for the live symbols (or just `symbols`), positions and orders.

    Market orders never rest, so only limit orders are carried over. Symbols without a
    position are written `flat`, so the file states the whole truth about them.
    """
    chosen = sorted(set(symbols) if symbols is not None else snapshot.live_symbols())
    entries: dict[str, Any] = {}
    for symbol in chosen:
        position = snapshot.positions.get(symbol)
        symbol_leverage = position.leverage if position is not None else leverage
        orders = [order for order in snapshot.orders(symbol) if order.order_type == "limit"]
        entries[symbol] = {
            "position": _position_entry(position) if position is not None else {"side": "flat"},
            "orders": [_order_entry(order, symbol_leverage) for order in orders],
        }
    return {
        "version": 1,
        "account": {"user_id": snapshot.user_id},
        "defaults": {"leverage": leverage},
        "symbols": entries,
    }


class _Dumper(yaml.SafeDumper):
    """Writes `Decimal` as a plain YAML number, exactly as the exchange reported it."""


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    text = decimal_text(value)
    tag = "tag:yaml.org,2002:int" if "." not in text else "tag:yaml.org,2002:float"
    return dumper.represent_scalar(tag, text)


_Dumper.add_representer(Decimal, _represent_decimal)


def dump_yaml(document: dict[str, Any], *, header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=120)
    return header + body
