"""An account copied in as it stands elsewhere: wallet, positions and resting orders.

A rehearsal (`reconciler plan --rehearse`) runs a plan on a copy of the live account before
one real call is sent. The copy cannot be traded into existence: opening a position at the
mark would give it the mark as entry and the fees of the opening, and a resting order would
be checked against today's book. So the records are written as they are: each position with
its side, size, entry, leverage, margin and TP/SL, each order with its price, remaining size,
leverage, flags and the margin it reserves, and a wallet whose available balance is the
live one. The input is plain wire-shaped dicts (the API's field names), so the sandbox stays
independent of the reconciler that reads the live account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from reconciler.sandbox.accounting import initial_margin, money
from reconciler.sandbox.records import OrderRecord, PositionRecord
from reconciler.sandbox.session import Session
from reconciler.sandbox.validation import invalid

__all__ = ["restore_account"]

ZERO = Decimal(0)


def restore_account(
    session: Session,
    user_id: str,
    available: Decimal,
    positions: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
) -> dict[str, str]:
    """Write the copy into an existing, empty account; live ids to the copy's ids.

    `available` is the live account's available balance: the wallet is funded with it plus
    the margin the copied positions and orders hold, so both agree with the original.
    """
    session.require_account(user_id)
    ids: dict[str, str] = {}
    held = ZERO
    for raw in positions:
        position = PositionRecord(
            id=0,
            user_id=user_id,
            symbol=_symbol(session, raw),
            side=_choice(raw, "side", ("long", "short")),
            size=_positive(raw, "size"),
            entry_price=_positive(raw, "entryPrice"),
            leverage=int(raw["leverage"]),
            margin=money(_positive(raw, "margin")),
            take_profit=_optional(raw, "takeProfitPrice"),
            stop_loss=_optional(raw, "stopLossPrice"),
            created_at=session.now,
            updated_at=session.now,
        )
        session.insert_position(position)
        ids[str(raw["id"])] = str(position.id)
        held += position.margin
    for raw in orders:
        price = _positive(raw, "price")
        remaining = _positive(raw, "size") - Decimal(raw.get("filledSize") or 0)
        reduce_only = bool(raw.get("reduce_only"))
        leverage = int(raw.get("leverage") or 10)
        order = OrderRecord(
            id=0,
            user_id=user_id,
            symbol=_symbol(session, raw),
            side=_choice(raw, "side", ("buy", "sell")),
            order_type="limit",
            size=remaining,
            price=price,
            leverage=leverage,
            reduce_only=reduce_only,
            take_profit=_optional(raw, "takeProfit"),
            stop_loss=_optional(raw, "stopLoss"),
            status="open",
            filled_size=ZERO,
            avg_fill_price=None,
            reserved_margin=ZERO if reduce_only else initial_margin(price, remaining, leverage),
            created_at=session.now,
            updated_at=session.now,
        )
        session.insert_order(order)
        ids[str(raw["id"])] = str(order.id)
        held += order.reserved_margin
    session.book(user_id, "deposit", money(available + held), None)
    session.touched_users[user_id] = None
    return ids


def _symbol(session: Session, raw: Mapping[str, Any]) -> str:
    name = str(raw.get("symbol"))
    session.require_symbol(name)
    return name


def _choice(raw: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(name)
    if value not in allowed:
        raise invalid(f"{name} must be one of {', '.join(allowed)}")
    return str(value)


def _positive(raw: Mapping[str, Any], name: str) -> Decimal:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value <= 0:
        raise invalid(f"{name} must be a positive number")
    return Decimal(value)


def _optional(raw: Mapping[str, Any], name: str) -> Decimal | None:
    value = raw.get(name)
    return None if value is None else _positive(raw, name)
