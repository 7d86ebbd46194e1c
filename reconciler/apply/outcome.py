"""The four outcomes of a mutating call, and how an exception maps to one.

Apply must know, after every mutating call, whether the exchange executed it: only then can
it decide to continue, to stop, or to look the result up before doing anything else. This
module is pure (no network imports) so apply and its tests can use it freely.
"""

from __future__ import annotations

from enum import StrEnum

from reconciler.errors import (
    AuthError,
    InvalidRequest,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
)

__all__ = ["Outcome", "classify"]


class Outcome(StrEnum):
    """What is known about a mutating call after it returned or raised."""

    NOT_SENT = "not_sent"
    """Nothing reached the exchange: the client refused it, or no connection opened."""
    REJECTED = "rejected"
    """The exchange answered with a code that proves it did not execute the request."""
    ACCEPTED = "accepted"
    """The exchange executed it and said so (the call returned)."""
    UNKNOWN = "unknown"
    """It may have executed: look before acting again; never resend blindly."""


def classify(exc: BaseException | None) -> Outcome:
    """The outcome of a call that raised `exc` (`None`: it returned, so ACCEPTED).

    Anything not raised on purpose by the client (a cancellation mid-flight, a bug) is
    UNKNOWN: the request may have left.
    """
    if exc is None:
        return Outcome.ACCEPTED
    if isinstance(exc, Rejected | AuthError | RateLimited):
        return Outcome.REJECTED
    if isinstance(exc, InvalidRequest):
        return Outcome.NOT_SENT
    if isinstance(exc, TransportError):
        return Outcome.UNKNOWN if exc.sent else Outcome.NOT_SENT
    if isinstance(exc, OutcomeUnknown | ServerError):
        return Outcome.UNKNOWN
    return Outcome.UNKNOWN
