"""Errors of the Levret client: Levret's codes mapped onto the venue-neutral error tree.

The classes live in `reconciler.errors`, which apply reads; `LevretError` is their root
(`VenueError`), named for the adapter's own code.

The tree follows one question apply has to answer after every mutating call: *did the
exchange execute it?* A `Rejected` (or `AuthError`, `RateLimited`) proves it did not, an
`OutcomeUnknown` says nobody can tell without looking, and a `TransportError` with
`sent=False` says the request never left.

    ReconcilerError
    └── LevretError                 anything the exchange client raises on purpose
        ├── AuthError               INVALID_API_KEY, INVALID_SIGNATURE, SIGNATURE_EXPIRED,
        │                           TIMESTAMP_IN_FUTURE, REPLAYED_REQUEST, FORBIDDEN_SCOPE
        ├── RateLimited             RATE_LIMITED (429), after the client's own retries
        ├── Rejected                any other code proving non-execution (VALIDATION_ERROR…)
        │   ├── InsufficientMargin  INSUFFICIENT_MARGIN
        │   ├── NotFound            NOT_FOUND
        │   └── OrderNotOpen        ORDER_NOT_OPEN
        ├── ServerError             5xx or an unreadable answer, after the client's retries
        │   └── UnstableListing     a paged list kept changing while it was walked
        ├── OutcomeUnknown          a mutation may or may not have executed; never resent
        ├── TransportError          the network failed; `sent` says if bytes may have left
        └── InvalidRequest          refused by the client itself before anything was sent

No message ever carries a header, the signature or the secret: messages are built from the
method, the path, the exchange's code and its message only.
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import (
    AuthError,
    InsufficientMargin,
    InvalidRequest,
    NotFound,
    OrderNotOpen,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
    UnstableListing,
)
from reconciler.errors import VenueError as LevretError

__all__ = [
    "AUTH_CODES",
    "AuthError",
    "InsufficientMargin",
    "InvalidRequest",
    "LevretError",
    "NotFound",
    "OrderNotOpen",
    "OutcomeUnknown",
    "RateLimited",
    "Rejected",
    "ServerError",
    "TransportError",
    "UnstableListing",
    "error_for_code",
]

AUTH_CODES = frozenset(
    {
        "INVALID_API_KEY",
        "INVALID_SIGNATURE",
        "SIGNATURE_EXPIRED",
        "TIMESTAMP_IN_FUTURE",
        "REPLAYED_REQUEST",
        "FORBIDDEN_SCOPE",
    }
)


_BY_CODE: dict[str, type[Rejected]] = {
    "INSUFFICIENT_MARGIN": InsufficientMargin,
    "NOT_FOUND": NotFound,
    "ORDER_NOT_OPEN": OrderNotOpen,
}


def error_for_code(
    code: str,
    status: int,
    message: str,
    *,
    method: str | None = None,
    path: str | None = None,
    retry_after: float | None = None,
) -> LevretError:
    """The exception for an exchange error envelope.

    A 5xx is a `ServerError` whatever its code. Any 4xx code not listed in the API reading is
    still a `Rejected`: HTTP says a 4xx was refused, and the documented codes all agree.
    """
    where: dict[str, Any] = {"code": code, "status": status, "method": method, "path": path}
    if status >= 500:
        return ServerError(message, **where)
    if code == "RATE_LIMITED" or status == 429:
        return RateLimited(message, retry_after=retry_after, **where)
    if code in AUTH_CODES:
        return AuthError(message, **where)
    return _BY_CODE.get(code, Rejected)(message, **where)
