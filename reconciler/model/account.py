"""The account as the reconciler sees it: symbols, marks, positions, orders, fills, balances.

Plain frozen values in the domain's own names, independent of any venue's wire: the Levret
adapter's parsers (`reconciler.levret.parse`) read the exchange's JSON into them, whatever
that JSON calls its fields. Every number is a `Decimal`.
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
    model_config = ConfigDict(extra="forbid", frozen=True)


class SymbolSpec(Payload):
    symbol: str
    base_asset: str = ""
    quote_asset: str = "USDT"
    tick_size: Decimal
    step_size: Decimal
    min_size: Decimal
    max_leverage: int
    status: Literal["trading", "halted"] = "trading"


class MarketStats(Payload):
    symbol: str
    mark_price: Decimal
    # Not used by the reconciler: an exchange may leave them out.
    last_price: Decimal | None = None
    high24h: Decimal | None = None
    low24h: Decimal | None = None
    volume24h: Decimal | None = None
    change24h: Decimal | None = None
    funding_rate: Decimal | None = None
    next_funding_time: int | None = None


class OrderBook(Payload):
    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    timestamp: int


class Candle(Payload):
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Order(Payload):
    id: str
    user_id: str = ""
    symbol: str
    side: OrderSide
    order_type: OrderType
    size: Decimal
    price: Decimal | None = None
    leverage: int | None = None
    reduce_only: bool = False
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    status: OrderStatus
    filled_size: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    created_at: int
    updated_at: int

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filled_size


class CancelAllResult(Payload):
    cancelled: list[str]
    count: int


class Position(Payload):
    id: str
    user_id: str = ""
    symbol: str
    side: PositionSide
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: int
    margin: Decimal
    margin_mode: Literal["isolated"] = "isolated"
    take_profit_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    liquidation_price: Decimal | None = None
    unrealized_pnl: Decimal = Decimal(0)
    created_at: int = 0
    updated_at: int = 0


class AccountOverview(Payload):
    user_id: str = ""
    currency: str = "USDT"
    equity: Decimal
    # Not used by the reconciler (it needs equity only): an exchange may leave them out.
    deposits: Decimal | None = None
    wallet_balance: Decimal | None = None
    available_balance: Decimal | None = None
    position_margin: Decimal | None = None
    order_margin: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    total_fees: Decimal | None = None


class BalanceEntry(Payload):
    time: int
    type: Literal["deposit", "fee", "realized_pnl", "liquidation"]
    amount: Decimal
    balance: Decimal
    symbol: str | None = None


class Trade(Payload):
    id: str
    # None for a fill no order of ours made (a liquidation, a position-close fill).
    order_id: str | None = None
    symbol: str
    side: OrderSide
    size: Decimal
    price: Decimal
    fee: Decimal | None = None
    realized_pnl: Decimal | None = None
    liquidity: Literal["maker", "taker"] = "taker"
    timestamp: int = 0


class Page(Payload, Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int = Field(ge=0)
    # How many items the exchange's page held, where a reader kept only some (`items`):
    # whether a page was empty is the exchange's answer, not the filter's.
    listed: int | None = Field(default=None, ge=0)

    @property
    def held(self) -> int:
        """The items the exchange's page held, kept or not."""
        return len(self.items) if self.listed is None else self.listed
