"""`--wire-style`: the sandbox answering in another plausible response shape (a test aid).

The Levret documentation shows request bodies only, so the response shapes the client reads
are a guess. These styles rewrite every REST answer's `data` (never a request, never the
stream, never the control API) into other shapes a real exchange might use, so tests can show
the client reads each of them the same way:

documented
    As `docs/levret-api.md` reads the exchange (the default).
snake
    snake_case names, ids under the entity's own name (`order_id`), numbers as decimal
    strings, times as ISO-8601 strings, enums in UPPER_CASE, lists under `list`, pagination in
    a `pagination` object.
seconds
    camelCase, ids under `orderId` / `positionId` / `tradeId`, times as epoch seconds with a
    millisecond fraction (the envelope's `timestamp` as epoch ms), the other enum spellings
    (`canceled`, `new`, `partiallyFilled`, `LONG`), pages under `rows` with the numbers at the top.
sparse
    Documented names, but every field the reconciler does not use left out or null, unknown
    extra fields added, numbers as decimal strings, and pages as plain lists without
    pagination (the whole listing in one answer).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["DEFAULT_WIRE_STYLE", "WIRE_STYLES", "envelope_timestamp", "restyle"]

DEFAULT_WIRE_STYLE = "documented"
WIRE_STYLES = ("documented", "snake", "seconds", "sparse")

_TIMES = frozenset({"createdAt", "updatedAt", "timestamp", "time", "openTime", "nextFundingTime"})
_COUNTS = frozenset({"leverage", "maxLeverage", "page", "pageSize", "total", "count"})
_ENUMS = frozenset({"side", "orderType", "status", "liquidity", "type", "marginMode"})
_SECONDS_SPELLING = {
    "cancelled": "canceled",
    "open": "new",
    "partially_filled": "partiallyFilled",
    "long": "LONG",
    "short": "SHORT",
}
# Fields the reconciler never reads, per entity marker: `sparse` drops them.
_UNUSED = frozenset(
    {
        "baseAsset",
        "quoteAsset",
        "userId",
        "lastPrice",
        "high24h",
        "low24h",
        "volume24h",
        "change24h",
        "fundingRate",
        "nextFundingTime",
        "liquidity",
        "fee",
        "realizedPnl",
        "liquidationPrice",
        "unrealizedPnl",
        "deposits",
        "walletBalance",
        "availableBalance",
        "positionMargin",
        "orderMargin",
        "totalFees",
    }
)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _own_id(entity: dict[str, Any]) -> str | None:
    """The entity's own id name, told from the fields only that entity has."""
    if "orderType" in entity:
        return "orderId"
    if "marginMode" in entity:
        return "positionId"
    if "orderId" in entity and "price" in entity:
        return "tradeId"
    return None


def _value(style: str, name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if name in _TIMES and isinstance(value, int):
        if style == "snake":
            return _iso(value)
        if style == "seconds":
            return Decimal(value) / 1000
        return value
    if name in _ENUMS and isinstance(value, str):
        if style == "snake":
            return value.upper()
        if style == "seconds":
            return _SECONDS_SPELLING.get(value, value)
        return value
    if isinstance(value, int | Decimal) and name not in _COUNTS and style in ("snake", "sparse"):
        return str(value)
    if isinstance(value, list):
        return [_value(style, name, item) for item in value]
    if isinstance(value, dict):
        return _entity(style, value)
    return value


def _entity(style: str, entity: dict[str, Any]) -> dict[str, Any]:
    own_id = _own_id(entity)
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if style == "sparse" and name in _UNUSED:
            if name in ("userId", "fee"):
                out[name] = None  # present but null, the other way of not saying
            continue
        key = own_id if name == "id" and own_id and style in ("snake", "seconds") else name
        key = _snake(key) if style == "snake" else key
        out[key] = _value(style, name, value)
    if style == "sparse":
        out["venue"] = "sandbox"  # an extra the reconciler must ignore
    return out


def restyle(style: str, data: Any) -> Any:
    """`data` of a REST answer in `style`."""
    if style == DEFAULT_WIRE_STYLE:
        return data
    if isinstance(data, list):
        items = [_value(style, "", item) for item in data]
        return {"list": items} if style == "snake" else items
    if isinstance(data, dict) and "items" in data and "total" in data:
        items = [_value(style, "", item) for item in data["items"]]
        numbers = {"page": data["page"], "pageSize": data["pageSize"], "total": data["total"]}
        if style == "snake":
            return {"list": items, "pagination": {_snake(k): v for k, v in numbers.items()}}
        if style == "seconds":
            return {"rows": items, **numbers}
        return items
    if isinstance(data, dict):
        return _entity(style, data)
    return data


def envelope_timestamp(style: str, ms: int) -> Any:
    """The envelope's `timestamp` in `style`."""
    return ms if style == "seconds" else _iso(ms)
