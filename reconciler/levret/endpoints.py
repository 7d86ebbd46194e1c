"""Which answer each Levret endpoint gives, and the name errors call it by.

Errors name an endpoint by its template (`GET /trade/user/:userId`), never by the concrete
path, so an id of the account never has to appear in an error line to say where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.levret import parse
from reconciler.levret.fields import Entity

__all__ = ["ANSWERS", "Answer", "answer_for", "endpoint_label", "template"]

Shape = Literal["one", "list", "page"]


@dataclass(frozen=True)
class Answer:
    """What an endpoint's `data` is: one entity, a list, or a page, of `reader`'s entity."""

    shape: Shape
    reader: Callable[[Entity], Any]


ANSWERS: dict[str, Answer] = {
    "GET /market/supported-symbols": Answer("list", parse.symbol_spec),
    "GET /market/market-stats": Answer("one", parse.market_stats),
    "GET /market/orderbook": Answer("one", parse.order_book),
    "GET /market/candles": Answer("list", parse.candle),
    "POST /order": Answer("one", parse.order),
    "GET /order/open": Answer("page", parse.order),
    "GET /order/:id": Answer("one", parse.order),
    "POST /order/cancel": Answer("one", parse.order),
    "POST /order/cancelAll": Answer("one", parse.cancel_all_result),
    "GET /positions": Answer("list", parse.position),
    "POST /positions/:id/leverage": Answer("one", parse.position),
    "POST /positions/:id/margin": Answer("one", parse.position),
    "POST /positions/:id/tpsl": Answer("one", parse.position),
    "POST /positions/:id/close": Answer("one", parse.order),
    "GET /wallet/account-overview": Answer("one", parse.account_overview),
    "GET /wallet/balance-history": Answer("list", parse.balance_entry),
    "GET /trade/user/:userId": Answer("page", parse.trade),
    "GET /trade/order/:orderId": Answer("page", parse.trade),
}

_FIXED_ORDER_PATHS = frozenset({"open", "cancel", "cancelAll"})


def template(path: str) -> str:
    """The documented template of a concrete path below the API prefix (query dropped)."""
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    one_order = len(parts) == 2 and parts[0] == "order" and parts[1] not in _FIXED_ORDER_PATHS
    if one_order or (len(parts) == 3 and parts[0] == "positions"):
        parts[1] = ":id"
    elif len(parts) == 3 and parts[:2] == ["trade", "user"]:
        parts[2] = ":userId"
    elif len(parts) == 3 and parts[:2] == ["trade", "order"]:
        parts[2] = ":orderId"
    return "/" + "/".join(parts)


def endpoint_label(method: str, path: str) -> str:
    """`METHOD /template`, the name every wire error uses."""
    return f"{method.upper()} {template(path)}"


def answer_for(method: str, path: str) -> Answer | None:
    return ANSWERS.get(endpoint_label(method, path))
