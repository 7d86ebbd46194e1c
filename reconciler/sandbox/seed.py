"""The demo state a new sandbox starts with, documented in `docs/sandbox.md`.

Positions and orders are placed through the engine like any client's, so the demo account
obeys the same accounting as everything created later.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.sandbox.engine import Exchange

__all__ = ["DEMO_BALANCE", "DEMO_SYMBOLS", "DEMO_USER", "seed_demo"]

DEMO_USER = "demo"
DEMO_BALANCE = Decimal(100_000)


def _spec(
    symbol: str, mark: str, tick: str, step: str, min_size: str, max_leverage: int
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "tickSize": Decimal(tick),
        "stepSize": Decimal(step),
        "minSize": Decimal(min_size),
        "maxLeverage": max_leverage,
        "markPrice": Decimal(mark),
    }


DEMO_SYMBOLS: list[dict[str, Any]] = [
    _spec("BTC_USDT", "45000", "0.1", "0.001", "0.001", 125),
    _spec("ETH_USDT", "2500", "0.01", "0.01", "0.01", 100),
    _spec("SOL_USDT", "100", "0.01", "0.1", "0.1", 50),
    _spec("BNB_USDT", "310", "0.01", "0.01", "0.01", 75),
    _spec("XRP_USDT", "0.62", "0.0001", "1", "1", 75),
    _spec("DOGE_USDT", "0.085", "0.00001", "10", "10", 50),
    _spec("ADA_USDT", "0.48", "0.0001", "1", "1", 75),
    _spec("AVAX_USDT", "36", "0.001", "0.1", "0.1", 50),
    _spec("LINK_USDT", "14.5", "0.001", "0.1", "0.1", 50),
    # Odd ones, as real venues list: a minimum size of many steps, and coarse ticks.
    _spec("LTC_USDT", "72.5", "0.5", "0.01", "0.5", 50),
    _spec("TRX_USDT", "0.105", "0.0005", "1", "100", 50),
]

_DEMO_ORDERS: list[dict[str, Any]] = [
    {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": Decimal("0.2"),
     "leverage": 10},
    {"symbol": "ETH_USDT", "side": "sell", "orderType": "market", "size": Decimal(3),
     "leverage": 5},
    {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit", "size": Decimal("0.1"),
     "price": Decimal(42000)},
    {"symbol": "SOL_USDT", "side": "buy", "orderType": "limit", "size": Decimal(10),
     "price": Decimal(90), "leverage": 5},
    {"symbol": "SOL_USDT", "side": "buy", "orderType": "limit", "size": Decimal(10),
     "price": Decimal(85), "leverage": 5},
]  # fmt: skip


def seed_demo(exchange: Exchange) -> None:
    """Symbols, the `demo` user with a trading and a read-only key, positions and orders."""
    exchange.add_symbols(DEMO_SYMBOLS)
    exchange.create_account(DEMO_USER, "demo-key", "demo-secret", ["read", "trade"], DEMO_BALANCE)
    exchange.add_api_key(DEMO_USER, "demo-read", "demo-read-secret", ["read"])
    for order in _DEMO_ORDERS:
        exchange.place_order(DEMO_USER, {"userId": DEMO_USER, **order})
