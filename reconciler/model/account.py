"""Typed payloads of the Levret API, as read in `docs/levret-api.md`.

These are pure data: the planner and the snapshot import them, so this module imports no
network code. Every number is a `Decimal`; unknown fields the exchange may add are kept
(`extra="allow"`) so a newer exchange does not break an older client.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccountOverview",
    "BalanceEntry",
    "CancelAllResult",
    "Candle",
    "MarketStats",
    "Order",
    "OrderBook",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "Page",
    "Position",
    "PositionSide",
    "SymbolSpec",
    "Trade",
]

OrderSide = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
OrderStatus = Literal["open", "partially_filled", "filled", "cancelled", "rejected"]
PositionSide = Literal["long", "short"]

T = TypeVar("T")


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class SymbolSpec(Payload):
    symbol: str
    baseAsset: str = ""
    quoteAsset: str = "USDT"
    tickSize: Decimal
    stepSize: Decimal
    minSize: Decimal
    maxLeverage: int
    status: Literal["trading", "halted"] = "trading"


class MarketStats(Payload):
    symbol: str
    markPrice: Decimal
    # Not used by the reconciler: an exchange may leave them out.
    lastPrice: Decimal | None = None
    high24h: Decimal | None = None
    low24h: Decimal | None = None
    volume24h: Decimal | None = None
    change24h: Decimal | None = None
    fundingRate: Decimal | None = None
    nextFundingTime: int | None = None


class OrderBook(Payload):
    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    timestamp: int


class Candle(Payload):
    openTime: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Order(Payload):
    id: str
    userId: str = ""
    symbol: str
    side: OrderSide
    orderType: OrderType
    size: Decimal
    price: Decimal | None = None
    leverage: int | None = None
    reduce_only: bool = False
    takeProfit: Decimal | None = None
    stopLoss: Decimal | None = None
    status: OrderStatus
    filledSize: Decimal = Decimal(0)
    avgFillPrice: Decimal | None = None
    createdAt: int
    updatedAt: int

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filledSize


class CancelAllResult(Payload):
    cancelled: list[str]
    count: int


class Position(Payload):
    id: str
    userId: str = ""
    symbol: str
    side: PositionSide
    size: Decimal
    entryPrice: Decimal
    markPrice: Decimal
    leverage: int
    margin: Decimal
    marginMode: Literal["isolated"] = "isolated"
    takeProfitPrice: Decimal | None = None
    stopLossPrice: Decimal | None = None
    liquidationPrice: Decimal | None = None
    unrealizedPnl: Decimal = Decimal(0)
    createdAt: int = 0
    updatedAt: int = 0


class AccountOverview(Payload):
    userId: str = ""
    currency: str = "USDT"
    equity: Decimal
    # Not used by the reconciler (it needs equity only): an exchange may leave them out.
    deposits: Decimal | None = None
    walletBalance: Decimal | None = None
    availableBalance: Decimal | None = None
    positionMargin: Decimal | None = None
    orderMargin: Decimal | None = None
    unrealizedPnl: Decimal | None = None
    realizedPnl: Decimal | None = None
    totalFees: Decimal | None = None


class BalanceEntry(Payload):
    time: int
    type: Literal["deposit", "fee", "realized_pnl", "liquidation"]
    amount: Decimal
    balance: Decimal
    symbol: str | None = None


class Trade(Payload):
    id: str
    # None for a fill no order of ours made (a liquidation, a position-close fill).
    orderId: str | None = None
    symbol: str
    side: OrderSide
    size: Decimal
    price: Decimal
    fee: Decimal | None = None
    realizedPnl: Decimal | None = None
    liquidity: Literal["maker", "taker"] = "taker"
    timestamp: int = 0


class Page(Payload, Generic[T]):
    items: list[T]
    page: int
    pageSize: int
    total: int = Field(ge=0)
