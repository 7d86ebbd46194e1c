"""A live account copied into the Levret sandbox, the exchange's emulator, for rehearsals.

The copy is seeded the way the sandbox takes an account, in the exchange's own field names
(the sandbox is Levret's emulator, so only this adapter may speak to it), and read back into
the domain through the same parsers as a live answer. The sandbox is imported only when a
copy is made: `plan` and `apply` without `--rehearse` never load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel

from reconciler.levret import parse
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import Position, Trade
from reconciler.model.snapshot import Snapshot

__all__ = ["AccountCopy", "copy_account"]

_KEY_ID, _SECRET = "rehearsal-key", "rehearsal-secret"
_BASE_URL = "http://127.0.0.1/api/v1"  # never dialled: the transport is the app itself

# The domain's names of the fields the sandbox is seeded with, in the API's spelling.
_WIRE_NAMES = {
    "base_asset": "baseAsset",
    "quote_asset": "quoteAsset",
    "tick_size": "tickSize",
    "step_size": "stepSize",
    "min_size": "minSize",
    "max_leverage": "maxLeverage",
    "user_id": "userId",
    "entry_price": "entryPrice",
    "mark_price": "markPrice",
    "margin_mode": "marginMode",
    "take_profit_price": "takeProfitPrice",
    "stop_loss_price": "stopLossPrice",
    "liquidation_price": "liquidationPrice",
    "unrealized_pnl": "unrealizedPnl",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
    "order_type": "orderType",
    "take_profit": "takeProfit",
    "stop_loss": "stopLoss",
    "filled_size": "filledSize",
    "avg_fill_price": "avgFillPrice",
}


def _wire(model: BaseModel) -> dict[str, Any]:
    fields = model.model_dump(mode="python")
    return {_WIRE_NAMES.get(name, name): value for name, value in fields.items()}


@dataclass
class AccountCopy:
    """The in-process sandbox holding the copy, and how a client reaches it."""

    transport: httpx.AsyncBaseTransport
    exchange: Any  # the sandbox's `Exchange`
    user_id: str

    def client_settings(self) -> ClientSettings:
        return ClientSettings(
            api_key_id=_KEY_ID,
            api_key_secret=_SECRET,
            user_id=self.user_id,
            base_url=_BASE_URL,
            rate_limit_per_minute=10**9,
        )

    async def set_read_lag(self, read_lag_ms: int) -> None:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://127.0.0.1") as ctl:
            answer = await ctl.post("/_sandbox/faults", json={"read_lag_ms": read_lag_ms})
            answer.raise_for_status()

    def positions(self) -> dict[str, Position]:
        raw = self.exchange.positions(self.user_id, None)
        read = parse.read_list("copy positions", raw, parse.position).value
        return {position.symbol: position for position in read}

    def fills(self) -> list[Trade]:
        trades: list[Trade] = []
        page = 1
        while True:
            answer = self.exchange.user_trades(self.user_id, None, page, 100, None, None)
            trades += parse.read_page("copy trades", answer, parse.trade).value.items
            if page * 100 >= answer["total"]:
                return trades
            page += 1


def copy_account(live: Snapshot, available: Decimal, profile: str) -> AccountCopy:
    """A sandbox under `profile` holding `live`: specs at their marks, positions, orders."""
    from reconciler.sandbox.app import SandboxSettings, create_app
    from reconciler.sandbox.engine import Exchange

    specs: list[dict[str, Any]] = []
    for symbol, spec in sorted(live.specs.items()):
        mark = live.mark(symbol)
        if mark is None:
            continue  # a symbol the plan needs no price for is not traded by it
        fields = {k: v for k, v in _wire(spec).items() if v not in (None, "")}
        specs.append({**fields, "markPrice": mark})
    # No stream: the copy is reached only through its transport, never subscribed to.
    exchange = Exchange.with_symbols(specs, stream_events=False)
    exchange.create_account(live.user_id, _KEY_ID, _SECRET, ("read", "trade"), Decimal(0))
    positions = [_wire(p) for p in live.positions.values()]
    orders = [
        _wire(o) for orders in live.open_orders.values() for o in orders if o.price is not None
    ]
    exchange.restore_account(live.user_id, available, positions, orders)
    app = create_app(exchange, SandboxSettings(rate_limit=10**9, profile=profile))
    return AccountCopy(httpx.ASGITransport(app=app), exchange, live.user_id)
