"""Errors of the Levret client, shaped by what the caller must do next.

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

from reconciler.errors import ReconcilerError

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


class LevretError(ReconcilerError):
    """Root of the client's errors; `code` and `status` are the exchange's when it answered."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status = status
        self.method = method
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        tag = f" [{self.code}]" if self.code else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{tag}{status}"


class AuthError(LevretError):
    """The exchange refused the credentials or the signature: nothing was executed."""


class RateLimited(LevretError):
    """HTTP 429; `retry_after` is the server's `Retry-After` in seconds when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class Rejected(LevretError):
    """An exchange code that proves the request was not executed (e.g. VALIDATION_ERROR)."""

    code: str
    status: int


class InsufficientMargin(Rejected):
    """INSUFFICIENT_MARGIN: not enough available balance, or margin below the requirement."""


class NotFound(Rejected):
    """NOT_FOUND: unknown order, position, symbol or route."""


class OrderNotOpen(Rejected):
    """ORDER_NOT_OPEN: cancel of an order that is already filled, cancelled or rejected."""


class ServerError(LevretError):
    """A 5xx or an answer that is not the documented envelope; whether it executed is open."""


class UnstableListing(ServerError):
    """Pages of one listing disagreed (its `total` kept changing) after every restart.

    Returning what was collected could silently miss an item (an open order the planner
    would then not cancel), so the walk fails instead and the caller reads again later.
    """


class OutcomeUnknown(LevretError):
    """A mutation was sent and no answer proves either way whether it executed.

    Carries the request (`method`, `path` below the API prefix, `body` as the caller built
    it) and `sent_at_ms` (local epoch ms of the last send) so apply can look the result up,
    e.g. list open orders created after `sent_at_ms`, before deciding anything. The client
    never resends such a request by itself.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        body: Any,
        sent_at_ms: int,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.body = body
        self.sent_at_ms = sent_at_ms
        super().__init__(message, code=code, status=status, method=method, path=path)


class TransportError(LevretError):
    """The network failed and retries (if the call allowed any) ran out.

    `sent` is False when the connection never opened, so the request certainly did not reach
    the exchange; True when bytes may have left.
    """

    def __init__(self, message: str, *, sent: bool, **kw: Any) -> None:
        self.sent = sent
        super().__init__(message, **kw)


class InvalidRequest(LevretError):
    """The client refused the call before sending anything (bad path, closed client...)."""


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
