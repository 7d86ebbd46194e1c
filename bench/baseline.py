"""The rebalance a plain script would do: the yardstick the reconciler is measured against.

Written the way the exchange's documentation shows Python clients: a blocking HTTP library
(`requests`, or `httpx` in sync mode when `requests` is missing), one call at a time, each
signed by hand as the documentation describes. It does what such scripts do: read positions
and orders, then per symbol cancel every order and place the wanted ones again, and close and
re-open a position that differs in any way. A 429 is waited out (`Retry-After`) and retried,
the least a script needs to finish at all.

It does not pace itself and it does not diff orders: that is the point of the comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from reconciler.model.desired import DesiredState

try:
    import requests as _requests

    def _send(method: str, url: str, headers: dict[str, str], data: str | None) -> Any:
        return _requests.request(method, url, headers=headers, data=data, timeout=30)

except ImportError:  # pragma: no cover - depends on the environment
    import httpx as _httpx

    def _send(method: str, url: str, headers: dict[str, str], data: str | None) -> Any:
        return _httpx.request(method, url, headers=headers, content=data, timeout=30)


__all__ = ["BaselineResult", "rebalance"]


@dataclass
class BaselineResult:
    calls: int = 0
    rate_limited: int = 0
    seconds: float = 0.0


class _Api:
    """`sign` + `request`, as in the documentation's example."""

    def __init__(self, base_url: str, key_id: str, secret: str, result: BaselineResult) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = urlsplit(self.base_url).path
        self.key_id = key_id
        self.secret = secret
        self.result = result

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body, separators=(",", ":")) if body is not None else None
        while True:
            timestamp = str(int(time.time() * 1000))
            payload = method + self.prefix + path + timestamp + (data or "")
            signature = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-API-KEY-ID": self.key_id,
                "X-API-KEY-SECRET": self.secret,
                "X-API-KEY-TS": timestamp,
                "X-API-KEY-EXP": "60000",
                "X-API-KEY-SIGN": signature,
            }
            response = _send(method, self.base_url + path, headers, data)
            self.result.calls += 1
            if response.status_code == 429:
                self.result.rate_limited += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            envelope = response.json()
            if not envelope.get("success"):
                raise RuntimeError(f"{method} {path}: {envelope.get('error')}")
            return envelope["data"]


def _number(value: Decimal) -> float:
    """Scripts send floats; every price and size here prints back as its own decimal text."""
    return float(value)


def rebalance(base_url: str, key_id: str, secret: str, desired: DesiredState) -> BaselineResult:
    """Make the account match `desired` the plain way; returns calls made and wall time."""
    user_id = desired.account.user_id or ""
    result = BaselineResult()
    api = _Api(base_url, key_id, secret, result)
    started = time.perf_counter()
    positions = {p["symbol"]: p for p in api.request("GET", "/positions")}
    order_symbols: set[str] = set()
    page = 1
    while True:
        data = api.request("GET", f"/order/open?userId={user_id}&page={page}&pageSize=100")
        order_symbols.update(order["symbol"] for order in data["items"])
        if page * data["pageSize"] >= data["total"] or not data["items"]:
            break
        page += 1
    for symbol, entry in desired.symbols.items():
        if symbol in order_symbols:
            api.request("POST", "/order/cancelAll", {"userId": user_id, "symbol": symbol})
        live = positions.get(symbol)
        wanted = entry.position
        if wanted is not None and not _same(live, wanted, desired.position_leverage(symbol)):
            if live is not None:
                api.request("POST", f"/positions/{live['id']}/close")
            if wanted.side != "flat" and wanted.size is not None:
                order: dict[str, Any] = {
                    "userId": user_id,
                    "symbol": symbol,
                    "side": "buy" if wanted.side == "long" else "sell",
                    "orderType": "market",
                    "size": _number(wanted.size),
                    "leverage": desired.position_leverage(symbol),
                }
                if wanted.take_profit is not None:
                    order["takeProfit"] = _number(wanted.take_profit)
                if wanted.stop_loss is not None:
                    order["stopLoss"] = _number(wanted.stop_loss)
                api.request("POST", "/order", order)
        for limit in entry.orders or ():
            api.request(
                "POST",
                "/order",
                {
                    "userId": user_id,
                    "symbol": symbol,
                    "side": limit.side,
                    "orderType": "limit",
                    "size": _number(limit.size),
                    "price": _number(limit.price),
                    "leverage": desired.order_leverage(symbol, limit),
                },
            )
    result.seconds = time.perf_counter() - started
    return result


def _same(live: dict[str, Any] | None, wanted: Any, leverage: int) -> bool:
    """Any difference at all means close and re-open."""
    if wanted.side == "flat":
        return live is None
    if live is None:
        return False

    def price(value: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    return bool(
        live["side"] == wanted.side
        and Decimal(str(live["size"])) == wanted.size
        and live["leverage"] == leverage
        and price(live.get("takeProfitPrice")) == wanted.take_profit
        and price(live.get("stopLossPrice")) == wanted.stop_loss
    )
