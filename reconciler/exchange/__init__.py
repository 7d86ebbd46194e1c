"""The signed Levret client and its typed models.

Names are loaded lazily: `import reconciler.exchange.models` (which the planner does) must not
pull in `httpx`, `socketio` or the client, and this package's `__init__` runs on that import.
`models`, `errors`, `outcome` and `settings` import no network code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.exchange.client import (
        UNCHANGED,
        LevretClient,
        RetryClass,
        Unchanged,
        encode_query,
        retry_class,
    )
    from reconciler.exchange.errors import (
        AuthError,
        InsufficientMargin,
        InvalidRequest,
        LevretError,
        NotFound,
        OrderNotOpen,
        OutcomeUnknown,
        RateLimited,
        Rejected,
        ServerError,
        TransportError,
        UnstableListing,
    )
    from reconciler.exchange.models import (
        AccountOverview,
        BalanceEntry,
        CancelAllResult,
        Candle,
        MarketStats,
        Order,
        OrderBook,
        Page,
        Position,
        SymbolSpec,
        Trade,
    )
    from reconciler.exchange.outcome import Outcome, classify
    from reconciler.exchange.settings import ClientSettings
    from reconciler.exchange.stream import LevretStream, StreamEvent
    from reconciler.exchange.sync import SyncLevretClient

__all__ = [
    "UNCHANGED",
    "AccountOverview",
    "AuthError",
    "BalanceEntry",
    "CancelAllResult",
    "Candle",
    "ClientSettings",
    "InsufficientMargin",
    "InvalidRequest",
    "LevretClient",
    "LevretError",
    "LevretStream",
    "MarketStats",
    "NotFound",
    "Order",
    "OrderBook",
    "OrderNotOpen",
    "Outcome",
    "OutcomeUnknown",
    "Page",
    "Position",
    "RateLimited",
    "Rejected",
    "RetryClass",
    "ServerError",
    "StreamEvent",
    "SymbolSpec",
    "SyncLevretClient",
    "Trade",
    "TransportError",
    "Unchanged",
    "UnstableListing",
    "classify",
    "encode_query",
    "retry_class",
]

_WHERE = {
    "AccountOverview": "reconciler.exchange.models",
    "AuthError": "reconciler.exchange.errors",
    "BalanceEntry": "reconciler.exchange.models",
    "CancelAllResult": "reconciler.exchange.models",
    "Candle": "reconciler.exchange.models",
    "ClientSettings": "reconciler.exchange.settings",
    "InsufficientMargin": "reconciler.exchange.errors",
    "InvalidRequest": "reconciler.exchange.errors",
    "LevretClient": "reconciler.exchange.client",
    "LevretError": "reconciler.exchange.errors",
    "LevretStream": "reconciler.exchange.stream",
    "MarketStats": "reconciler.exchange.models",
    "NotFound": "reconciler.exchange.errors",
    "Order": "reconciler.exchange.models",
    "OrderBook": "reconciler.exchange.models",
    "OrderNotOpen": "reconciler.exchange.errors",
    "Outcome": "reconciler.exchange.outcome",
    "OutcomeUnknown": "reconciler.exchange.errors",
    "Page": "reconciler.exchange.models",
    "Position": "reconciler.exchange.models",
    "RateLimited": "reconciler.exchange.errors",
    "Rejected": "reconciler.exchange.errors",
    "RetryClass": "reconciler.exchange.client",
    "ServerError": "reconciler.exchange.errors",
    "StreamEvent": "reconciler.exchange.stream",
    "SymbolSpec": "reconciler.exchange.models",
    "SyncLevretClient": "reconciler.exchange.sync",
    "Trade": "reconciler.exchange.models",
    "TransportError": "reconciler.exchange.errors",
    "UnstableListing": "reconciler.exchange.errors",
    "UNCHANGED": "reconciler.exchange.client",
    "Unchanged": "reconciler.exchange.client",
    "classify": "reconciler.exchange.outcome",
    "encode_query": "reconciler.exchange.client",
    "retry_class": "reconciler.exchange.client",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
