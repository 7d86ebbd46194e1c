"""The sandbox's OpenAPI document: schemas of every payload, built from the endpoint table.

Kept apart from the app so the routing code reads as routing; the app's `ENDPOINTS` table
is the one source of both the routes and this document, so they cannot disagree. Tools such
as schemathesis fuzz the sandbox from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "INT",
    "NULLABLE_NUMBER",
    "NUMBER",
    "STR",
    "Described",
    "Param",
    "list_of",
    "openapi_document",
    "page_of",
    "ref",
]


@dataclass(frozen=True)
class Param:
    """A query parameter, for validation hints in the OpenAPI document."""

    name: str
    schema: dict[str, Any]
    required: bool = False


class Described(Protocol):
    """What the document needs to know of an endpoint."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def scope(self) -> str | None: ...
    @property
    def summary(self) -> str: ...
    @property
    def params(self) -> tuple[Param, ...]: ...
    @property
    def body(self) -> dict[str, Any] | None: ...
    @property
    def data(self) -> dict[str, Any]: ...


NUMBER = {"type": "number"}
NULLABLE_NUMBER = {"type": "number", "nullable": True}
INT = {"type": "integer"}
STR = {"type": "string"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "page", "pageSize", "total"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "page": {"type": "integer"},
            "pageSize": {"type": "integer"},
            "total": {"type": "integer"},
        },
    }


def list_of(item: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(item)}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_SCHEMAS: dict[str, Any] = {
    "SymbolSpec": _object(
        ["symbol", "tickSize", "stepSize", "minSize", "maxLeverage", "status"],
        {
            "symbol": STR,
            "baseAsset": STR,
            "quoteAsset": STR,
            "tickSize": NUMBER,
            "stepSize": NUMBER,
            "minSize": NUMBER,
            "maxLeverage": INT,
            "status": {"type": "string", "enum": ["trading", "halted"]},
        },
    ),
    "MarketStats": _object(
        ["symbol", "lastPrice", "markPrice"],
        {
            "symbol": STR,
            "lastPrice": NUMBER,
            "markPrice": NUMBER,
            "high24h": NUMBER,
            "low24h": NUMBER,
            "volume24h": NUMBER,
            "change24h": NUMBER,
            "fundingRate": NUMBER,
            "nextFundingTime": {"type": "integer", "nullable": True},
        },
    ),
    "OrderBook": _object(
        ["symbol", "bids", "asks", "timestamp"],
        {
            "symbol": STR,
            "bids": {"type": "array", "items": {"type": "array", "items": NUMBER}},
            "asks": {"type": "array", "items": {"type": "array", "items": NUMBER}},
            "timestamp": INT,
        },
    ),
    "Candle": _object(
        ["openTime", "open", "high", "low", "close", "volume"],
        {
            "openTime": INT,
            "open": NUMBER,
            "high": NUMBER,
            "low": NUMBER,
            "close": NUMBER,
            "volume": NUMBER,
        },
    ),
    "OrderRequest": _object(
        ["userId", "symbol", "side", "orderType", "size"],
        {
            "userId": STR,
            "symbol": STR,
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "orderType": {"type": "string", "enum": ["market", "limit"]},
            "size": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "price": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "leverage": {"type": "integer", "minimum": 1},
            "reduce_only": {"type": "boolean"},
            "takeProfit": NULLABLE_NUMBER,
            "stopLoss": NULLABLE_NUMBER,
        },
    ),
    "Order": _object(
        ["id", "userId", "symbol", "side", "orderType", "size", "status", "createdAt"],
        {
            "id": STR,
            "userId": STR,
            "symbol": STR,
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "orderType": {"type": "string", "enum": ["market", "limit"]},
            "size": NUMBER,
            "price": NULLABLE_NUMBER,
            "leverage": INT,
            "reduce_only": {"type": "boolean"},
            "takeProfit": NULLABLE_NUMBER,
            "stopLoss": NULLABLE_NUMBER,
            "status": {
                "type": "string",
                "enum": ["open", "partially_filled", "filled", "cancelled", "rejected"],
            },
            "filledSize": NUMBER,
            "avgFillPrice": NULLABLE_NUMBER,
            "createdAt": INT,
            "updatedAt": INT,
        },
    ),
    "Position": _object(
        ["id", "userId", "symbol", "side", "size", "entryPrice", "leverage", "margin"],
        {
            "id": STR,
            "userId": STR,
            "symbol": STR,
            "side": {"type": "string", "enum": ["long", "short"]},
            "size": NUMBER,
            "entryPrice": NUMBER,
            "markPrice": NUMBER,
            "leverage": INT,
            "margin": NUMBER,
            "marginMode": {"type": "string", "enum": ["isolated"]},
            "takeProfitPrice": NULLABLE_NUMBER,
            "stopLossPrice": NULLABLE_NUMBER,
            "liquidationPrice": NULLABLE_NUMBER,
            "unrealizedPnl": NUMBER,
            "createdAt": INT,
            "updatedAt": INT,
        },
    ),
    "AccountOverview": _object(
        ["userId", "walletBalance", "availableBalance", "equity"],
        {
            "userId": STR,
            "currency": STR,
            "deposits": NUMBER,
            "walletBalance": NUMBER,
            "availableBalance": NUMBER,
            "positionMargin": NUMBER,
            "orderMargin": NUMBER,
            "unrealizedPnl": NUMBER,
            "realizedPnl": NUMBER,
            "totalFees": NUMBER,
            "equity": NUMBER,
        },
    ),
    "BalanceEntry": _object(
        ["time", "type", "amount", "balance"],
        {
            "time": INT,
            "type": {"type": "string", "enum": ["deposit", "fee", "realized_pnl", "liquidation"]},
            "amount": NUMBER,
            "balance": NUMBER,
            "symbol": {"type": "string", "nullable": True},
        },
    ),
    "Trade": _object(
        ["id", "orderId", "symbol", "side", "size", "price", "fee", "timestamp"],
        {
            "id": STR,
            "orderId": STR,
            "symbol": STR,
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "size": NUMBER,
            "price": NUMBER,
            "fee": NUMBER,
            "realizedPnl": NUMBER,
            "liquidity": {"type": "string", "enum": ["maker", "taker"]},
            "timestamp": INT,
        },
    ),
    "Error": _object(
        ["success", "error", "path", "timestamp"],
        {
            "success": {"type": "boolean", "enum": [False]},
            "error": _object(["code", "message"], {"code": STR, "message": STR}),
            "path": STR,
            "timestamp": {"type": "string", "format": "date-time"},
        },
    ),
}

_SIGNED_HEADERS = ("X-API-KEY-ID", "X-API-KEY-TS", "X-API-KEY-SIGN")
_ERROR_STATUSES = {
    "400": "VALIDATION_ERROR or INSUFFICIENT_MARGIN",
    "401": "INVALID_API_KEY, INVALID_SIGNATURE, SIGNATURE_EXPIRED, TIMESTAMP_IN_FUTURE, "
    "REPLAYED_REQUEST",
    "403": "FORBIDDEN_SCOPE",
    "404": "NOT_FOUND",
    "409": "ORDER_NOT_OPEN",
    "429": "RATE_LIMITED",
    "500": "INTERNAL_ERROR",
}


def _success(data: dict[str, Any]) -> dict[str, Any]:
    return _object(
        ["success", "data", "timestamp"],
        {
            "success": {"type": "boolean", "enum": [True]},
            "data": data or {},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    )


def _operation(endpoint: Described) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        for p in endpoint.params
    ]
    for name in ("order_id", "position_id", "user_id"):
        if "{" + name + "}" in endpoint.path:
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
    responses: dict[str, Any] = {
        "200": {
            "description": "success envelope",
            "content": {"application/json": {"schema": _success(endpoint.data)}},
        }
    }
    for status, codes in _ERROR_STATUSES.items():
        responses[status] = {
            "description": codes,
            "content": {"application/json": {"schema": ref("Error")}},
        }
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.method.lower()
        + "".join(
            part.strip("{}").title().replace("_", "").replace("-", "")
            for part in endpoint.path.split("/")
        ),
        "parameters": parameters,
        "responses": responses,
    }
    if endpoint.scope is not None:
        operation["security"] = [{"apiKeyId": [], "apiKeyTs": [], "apiKeySign": []}]
        operation["x-scope"] = endpoint.scope
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": endpoint.body}},
        }
    return operation


def openapi_document(endpoints: Iterable[Described], prefix: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API served under `prefix`, built from its endpoints."""
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    schemes = {
        name: {"type": "apiKey", "in": "header", "name": header}
        for name, header in zip(
            ("apiKeyId", "apiKeyTs", "apiKeySign"), _SIGNED_HEADERS, strict=True
        )
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Levret futures API (reconciler sandbox)",
            "version": "1",
            "description": "Private operations are signed: lowercase hex HMAC-SHA256(secret, "
            "METHOD + PATH_WITH_QUERY + TS + BODY); see docs/levret-api.md.",
        },
        "servers": [{"url": prefix}],
        "paths": paths,
        "components": {"schemas": _SCHEMAS, "securitySchemes": schemes},
    }
