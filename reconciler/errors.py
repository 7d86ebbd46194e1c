"""The one root of every error the reconciler raises on purpose.

The CLI maps these to exit codes in one place (`reconciler.cli.root`), so each subclass carries
its exit code rather than every command deciding it again.

    ReconcilerError                 exit 1
    ├── SpecError                   exit 1   bad desired-state file (all problems at once)
    ├── LockUnavailable             exit 1   the lock server cannot be reached or used
    ├── PreconditionFailed          exit 3   stale plan, moved mark, changed fingerprint
    ├── PolicyViolation             exit 4   plan breaks a policy: nothing is sent
    ├── PartialApply                exit 5   some actions failed or did not converge
    ├── LockHeld                    exit 6   another apply holds the account lock
    └── Declined                    exit 7   the user did not answer `yes`

The codes are the members of `reconciler.exitcodes.ExitCode`, whose docstrings say what each
means.

A venue's errors derive from the root too, shaped by the one question apply must answer after
every mutating call, *did the venue execute it?*:

    ReconcilerError
    └── VenueError                  anything a venue adapter raises on purpose
        ├── AuthError               credentials or signature refused: nothing executed
        ├── RateLimited             too many requests, after the adapter's own retries
        ├── Rejected                a refusal proving non-execution
        │   ├── InsufficientMargin
        │   ├── NotFound
        │   └── OrderNotOpen
        ├── ServerError             a server failure or an unreadable answer: open
        │   └── UnstableListing     a paged list kept changing while it was walked
        ├── OutcomeUnknown          a mutation may or may not have executed; never resent
        ├── TransportError          the network failed; `sent` says if bytes may have left
        └── InvalidRequest          refused by the adapter itself before anything was sent

Each venue maps its own codes onto this tree (`reconciler.levret.errors.error_for_code`);
apply reads only the tree (`reconciler.apply.outcome`).
"""

from __future__ import annotations

from typing import Any

from reconciler.exitcodes import ExitCode


class ReconcilerError(Exception):
    """Base class; `exit_code` is what the CLI exits with when this reaches it."""

    exit_code: ExitCode = ExitCode.ERROR


class SpecError(ReconcilerError):
    """The desired-state file is invalid; `problems` lists every one with its location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LockUnavailable(ReconcilerError):
    """The account lock could not be taken *or refused*: its server is unreachable or misused."""


class PreconditionFailed(ReconcilerError):
    exit_code = ExitCode.STALE_PLAN


class PolicyViolation(ReconcilerError):
    exit_code = ExitCode.POLICY_VIOLATION

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__("\n".join(violations))


class PartialApply(ReconcilerError):
    exit_code = ExitCode.PARTIAL_APPLY


class LockHeld(ReconcilerError):
    exit_code = ExitCode.LOCK_HELD


class Declined(ReconcilerError):
    exit_code = ExitCode.DECLINED


class VenueError(ReconcilerError):
    """Root of a venue adapter's errors; `code` and `status` are the venue's when it answered."""

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


class AuthError(VenueError):
    """The exchange refused the credentials or the signature: nothing was executed."""


class RateLimited(VenueError):
    """Too many requests (HTTP 429); `retry_after` is the venue's wait in seconds, if given."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class Rejected(VenueError):
    """A refusal that proves the request was not executed (a validation error, say)."""

    code: str
    status: int


class InsufficientMargin(Rejected):
    """Not enough available balance, or margin below the requirement."""


class NotFound(Rejected):
    """Unknown order, position, symbol or route."""


class OrderNotOpen(Rejected):
    """Cancel of an order that is already filled, cancelled or rejected."""


class ServerError(VenueError):
    """A 5xx or an answer that is not the documented envelope; whether it executed is open."""


class UnstableListing(ServerError):
    """Pages of one listing disagreed (its `total` kept changing) after every restart.

    Returning what was collected could silently miss an item (an open order the planner
    would then not cancel), so the walk fails instead and the caller reads again later.
    """


class OutcomeUnknown(VenueError):
    """A mutation was sent and no answer proves either way whether it executed.

    Carries the request (`method`, `path` below the venue's API prefix, `body` as it was
    sent) and `sent_at_ms` (local epoch ms of the last send) so apply can look the result up,
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


class TransportError(VenueError):
    """The network failed and retries (if the call allowed any) ran out.

    `sent` is False when the connection never opened, so the request certainly did not reach
    the exchange; True when bytes may have left.
    """

    def __init__(self, message: str, *, sent: bool, **kw: Any) -> None:
        self.sent = sent
        super().__init__(message, **kw)


class InvalidRequest(VenueError):
    """The client refused the call before sending anything (bad path, closed client...)."""
