"""The circuit breaker: how much an unattended watcher may change before a person looks.

A self-healing loop that fights something it cannot see (another bot, a manual trader, a
planner bug, an exchange that keeps rejecting) would otherwise trade all day. Two limits:

- **budget**: at most `max_actions` calls and `max_notional` notional (quote currency, the sum
  of the actions' absolute notionals) in any rolling `window` (an hour by default). A plan
  that does not fit in what is left is not applied at all: half a plan (cancel the orders but
  never place their replacements) can be worse than none. The breaker is then *open* for
  budget; it closes again by itself when a later plan fits, or when the account is back in
  sync without help.
- **failures**: after `max_failures` failed applies in a row (not converged, or an error) the
  breaker *trips*: it stays open until the process restarts, because whatever fails keeps
  failing, and a person has to look. A successful apply resets the count.

Time is passed in by the caller (`now`), so tests move it without waiting. Pure: no IO.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

__all__ = ["Admission", "BreakerState", "CircuitBreaker", "OpenReason"]

BreakerState = Literal["closed", "open"]
OpenReason = Literal["budget", "failures"]


@dataclass(frozen=True)
class Admission:
    """The answer to "may this plan be applied now?"."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class _Spent:
    at: datetime
    actions: int
    notional: Decimal


class CircuitBreaker:
    """Rolling budget of actions and notional, plus a latch on consecutive failed applies."""

    def __init__(
        self,
        *,
        max_actions: int = 20,
        max_notional: Decimal = Decimal(100_000),
        max_failures: int = 3,
        window: timedelta = timedelta(hours=1),
    ) -> None:
        if max_actions < 1 or max_failures < 1 or max_notional <= 0:
            raise ValueError("breaker limits must be positive")
        self.max_actions = max_actions
        self.max_notional = max_notional
        self.max_failures = max_failures
        self.window = window
        self.failures = 0
        self._spent: deque[_Spent] = deque()
        self._open: OpenReason | None = None
        self._why = ""

    @property
    def state(self) -> BreakerState:
        return "closed" if self._open is None else "open"

    @property
    def open_reason(self) -> OpenReason | None:
        return self._open

    @property
    def tripped(self) -> bool:
        """Open on failures: latched until restart."""
        return self._open == "failures"

    def used(self, now: datetime) -> tuple[int, Decimal]:
        """Actions and notional spent in the window ending at `now`."""
        self._expire(now)
        actions = sum(entry.actions for entry in self._spent)
        notional = sum((entry.notional for entry in self._spent), Decimal(0))
        return actions, notional

    def admit(self, actions: int, notional: Decimal, now: datetime) -> Admission:
        """May a plan of `actions` calls and `notional` be applied now? Opens on refusal."""
        if self.tripped:
            return Admission(False, self._why)
        used_actions, used_notional = self.used(now)
        hours = self._window_text()
        if used_actions + actions > self.max_actions:
            return self._refuse(
                f"budget: {actions} action(s) would exceed {self.max_actions} per {hours} "
                f"({used_actions} used)"
            )
        if used_notional + abs(notional) > self.max_notional:
            return self._refuse(
                f"budget: notional {abs(notional)} would exceed {self.max_notional} per {hours} "
                f"({used_notional} used)"
            )
        self._open, self._why = None, ""
        return Admission(True, "within budget")

    def record(self, actions: int, notional: Decimal, now: datetime, *, ok: bool) -> bool:
        """Count what an apply sent, and whether it succeeded. True when this trips it."""
        if actions:
            self._spent.append(_Spent(now, actions, abs(notional)))
        if ok:
            self.failures = 0
            return False
        self.failures += 1
        if self.failures >= self.max_failures and not self.tripped:
            self._open = "failures"
            self._why = f"failures: {self.failures} failed applies in a row"
            return True
        return False

    def in_sync(self) -> None:
        """The account matches without help: a budget hold has nothing left to hold."""
        if self._open == "budget":
            self._open, self._why = None, ""

    def _refuse(self, why: str) -> Admission:
        self._open, self._why = "budget", why
        return Admission(False, why)

    def _expire(self, now: datetime) -> None:
        while self._spent and now - self._spent[0].at >= self.window:
            self._spent.popleft()

    def _window_text(self) -> str:
        seconds = self.window.total_seconds()
        if seconds == 3600:
            return "hour"
        return f"{seconds:g} s"
