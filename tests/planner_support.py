"""Builders shared by the planner, render and scenario tests: demo specs, positions, orders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.model import desired as spec
from reconciler.model.account import Order, Position, SymbolSpec
from reconciler.model.snapshot import Snapshot
from reconciler.sandbox.seed import DEMO_SYMBOLS

USER = "demo"

PLANNED_SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")
_DEMO = [demo for demo in DEMO_SYMBOLS if demo["symbol"] in PLANNED_SYMBOLS]
SPECS: dict[str, SymbolSpec] = {
    demo["symbol"]: SymbolSpec(
        symbol=demo["symbol"],
        base_asset=demo["symbol"].split("_")[0],
        tick_size=demo["tickSize"],
        step_size=demo["stepSize"],
        min_size=demo["minSize"],
        max_leverage=demo["maxLeverage"],
    )
    for demo in _DEMO
}
MARKS: dict[str, Decimal] = {demo["symbol"]: demo["markPrice"] for demo in _DEMO}


def position(
    symbol: str,
    side: str,
    size: str | Decimal,
    *,
    leverage: int = 5,
    entry: str | Decimal | None = None,
    mark: str | Decimal | None = None,
    margin: str | Decimal | None = None,
    tp: str | Decimal | None = None,
    sl: str | Decimal | None = None,
    id: str | None = None,
) -> Position:
    entry_price = Decimal(entry) if entry is not None else MARKS[symbol]
    amount = Decimal(size)
    return Position(
        id=id or f"pos-{symbol}",
        user_id=USER,
        symbol=symbol,
        side=side,
        size=amount,
        entry_price=entry_price,
        mark_price=Decimal(mark) if mark is not None else entry_price,
        leverage=leverage,
        margin=Decimal(margin) if margin is not None else entry_price * amount / leverage,
        take_profit_price=Decimal(tp) if tp is not None else None,
        stop_loss_price=Decimal(sl) if sl is not None else None,
    )


def order(
    symbol: str,
    side: str,
    price: str | Decimal,
    size: str | Decimal,
    *,
    id: str,
    leverage: int | None = 5,
    reduce_only: bool = False,
    filled: str | Decimal = "0",
    created: int = 0,
) -> Order:
    return Order(
        id=id,
        user_id=USER,
        symbol=symbol,
        side=side,
        order_type="limit",
        size=Decimal(size),
        price=Decimal(price),
        leverage=leverage,
        reduce_only=reduce_only,
        status="partially_filled" if Decimal(filled) else "open",
        filled_size=Decimal(filled),
        created_at=created,
        updated_at=created,
    )


def snapshot(
    positions: list[Position] | None = None,
    orders: list[Order] | None = None,
    marks: dict[str, Any] | None = None,
    equity: str | Decimal | None = None,
) -> Snapshot:
    grouped: dict[str, list[Order]] = {}
    for item in orders or []:
        grouped.setdefault(item.symbol, []).append(item)
    return Snapshot(
        user_id=USER,
        specs=dict(SPECS),
        positions={p.symbol: p for p in positions or []},
        open_orders={symbol: tuple(items) for symbol, items in grouped.items()},
        marks={k: Decimal(v) for k, v in (marks if marks is not None else MARKS).items()},
        equity=Decimal(equity) if equity is not None else None,
    )


def desired(text: str) -> spec.DesiredState:
    """A desired state from YAML text; `version: 1` is added when missing."""
    if "version:" not in text:
        text = "version: 1\n" + text
    return spec.loads(text, "desired.yaml")
