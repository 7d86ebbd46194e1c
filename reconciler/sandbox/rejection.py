"""The one way the sandbox refuses a request.

A `Rejection` means nothing was executed: the engine raises it inside its transaction, which
rolls back, and the HTTP layer turns it into the error envelope of `docs/levret-api.md`.
"""

from __future__ import annotations

__all__ = ["STATUS_BY_CODE", "Rejection"]

STATUS_BY_CODE: dict[str, int] = {
    "VALIDATION_ERROR": 400,
    "INSUFFICIENT_MARGIN": 400,
    "INVALID_API_KEY": 401,
    "INVALID_SIGNATURE": 401,
    "SIGNATURE_EXPIRED": 401,
    "TIMESTAMP_IN_FUTURE": 401,
    "REPLAYED_REQUEST": 401,
    "FORBIDDEN_SCOPE": 403,
    "NOT_FOUND": 404,
    "ORDER_NOT_OPEN": 409,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
}


class Rejection(Exception):
    """A refused request; `status` follows the code unless the caller overrides it."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)
