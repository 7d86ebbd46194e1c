"""A synchronous facade over `LevretClient` for scripts and the REPL.

It owns one event loop (`asyncio.Runner`) for its whole life, so the async client's
connection pool and rate limiter live on a single loop and survive between calls. Not for use
inside a running event loop (use `LevretClient` there). Paged walks return lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, Literal, Self, TypeVar

from reconciler.levret.client import UNCHANGED, CandleInterval, LevretClient, Number, Unchanged
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import (
    AccountOverview,
    BalanceEntry,
    CancelAllResult,
    Candle,
    MarketStats,
    Order,
    OrderBook,
    OrderSide,
    OrderType,
    Page,
    Position,
    SymbolSpec,
    Trade,
)

__all__ = ["SyncLevretClient"]

R = TypeVar("R")


class SyncLevretClient:
    """`with SyncLevretClient(settings) as c: c.positions()` — same methods, blocking."""

    def __init__(self, settings: ClientSettings, **client_options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(self._make(settings, client_options))

    @staticmethod
    async def _make(settings: ClientSettings, options: dict[str, Any]) -> LevretClient:
        return LevretClient(settings, **options)

    def __repr__(self) -> str:
        return f"Sync{self._client!r}"

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        return self._runner.run(coro)

    @staticmethod
    async def _collect(items: AsyncIterator[R]) -> list[R]:
        return [item async for item in items]

    def close(self) -> None:
        try:
            self._run(self._client.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._run(self._client.send(method, path, body))

    def supported_symbols(self) -> list[SymbolSpec]:
        return self._run(self._client.supported_symbols())

    def market_stats(self, symbol: str) -> MarketStats:
        return self._run(self._client.market_stats(symbol))

    def all_market_stats(self) -> list[MarketStats]:
        return self._run(self._client.all_market_stats())

    def orderbook(self, symbol: str, depth: int = 50) -> OrderBook:
        return self._run(self._client.orderbook(symbol, depth))

    def candles(
        self, symbol: str, interval: CandleInterval = "1m", limit: int = 500
    ) -> list[Candle]:
        return self._run(self._client.candles(symbol, interval, limit))

    def create_order(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        size: Number,
        **options: Any,
    ) -> Order:
        return self._run(self._client.create_order(symbol, side, order_type, size, **options))

    def open_orders(self, symbol: str | None = None, **options: Any) -> Page[Order]:
        return self._run(self._client.open_orders(symbol, **options))

    def all_open_orders(self, symbol: str | None = None, **options: Any) -> list[Order]:
        return self._run(self._collect(self._client.iter_open_orders(symbol, **options)))

    def get_order(self, order_id: str) -> Order:
        return self._run(self._client.get_order(order_id))

    def cancel_order(self, order_id: str) -> Order:
        return self._run(self._client.cancel_order(order_id))

    def cancel_all(self, symbol: str | None = None) -> CancelAllResult:
        return self._run(self._client.cancel_all(symbol))

    def positions(self, symbol: str | None = None) -> list[Position]:
        return self._run(self._client.positions(symbol))

    def set_leverage(self, position_id: str, leverage: int) -> Position:
        return self._run(self._client.set_leverage(position_id, leverage))

    def adjust_margin(
        self, position_id: str, mode: Literal["add", "reduce"], amount: Number
    ) -> Position:
        return self._run(self._client.adjust_margin(position_id, mode, amount))

    def set_tpsl(
        self,
        position_id: str,
        take_profit: Number | Unchanged | None = UNCHANGED,
        stop_loss: Number | Unchanged | None = UNCHANGED,
    ) -> Position:
        return self._run(self._client.set_tpsl(position_id, take_profit, stop_loss))

    def close_position(self, position_id: str) -> Order | None:
        return self._run(self._client.close_position(position_id))

    def account_overview(self) -> AccountOverview:
        return self._run(self._client.account_overview())

    def balance_history(self, days: int = 7) -> list[BalanceEntry]:
        return self._run(self._client.balance_history(days))

    def user_trades(self, symbol: str | None = None, **options: Any) -> Page[Trade]:
        return self._run(self._client.user_trades(symbol, **options))

    def all_user_trades(self, symbol: str | None = None, **options: Any) -> list[Trade]:
        return self._run(self._collect(self._client.iter_user_trades(symbol, **options)))

    def order_trades(self, order_id: str, **options: Any) -> Page[Trade]:
        return self._run(self._client.order_trades(order_id, **options))

    def all_order_trades(self, order_id: str, **options: Any) -> list[Trade]:
        return self._run(self._collect(self._client.iter_order_trades(order_id, **options)))
