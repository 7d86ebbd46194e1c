"""Change windows: when `watch --self-heal` may change the account.

An unattended reconciler that heals at any hour will one day close a position during an
auction, a release or a holiday nobody thought of. The desired-state file's `windows:` says
when changes are welcome, in cron expressions read in UTC (5 fields, minute resolution):

- `allow`: a change may be made in any minute one of these matches; no `allow` rule means
  every minute is allowed;
- `deny`: never in a minute one of these matches, whatever `allow` says;
- `pause_until`: a manual hold; nothing is changed before this instant.

Outside a window the watcher still reads and plans, and reports the drift; it only does not
send. Cron matching is croniter's (standard cron semantics, including the day-of-month /
day-of-week "or" rule), so the project carries no parser of its own. Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from croniter import croniter

if TYPE_CHECKING:
    from reconciler.model.desired import Windows

__all__ = ["CRON_FIELDS", "WindowDecision", "change_allowed", "check_cron", "cron_matches"]

CRON_FIELDS = 5


def check_cron(expression: str) -> str:
    """Validate one cron expression (a pydantic validator): five fields, croniter's syntax.

    Seconds and year fields are refused: matching is per minute, and a sixth field would
    silently change what "matches" means.
    """
    fields = expression.split()
    if len(fields) != CRON_FIELDS:
        raise ValueError(
            f"{expression!r} is not a cron expression: give 5 fields "
            "(minute hour day-of-month month day-of-week), in UTC"
        )
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    return " ".join(fields)


def cron_matches(expression: str, moment: datetime) -> bool:
    """True when `moment` (read in UTC) falls in a minute that `expression` matches."""
    utc = _utc(moment).replace(second=0, microsecond=0)
    return bool(croniter.match(expression, utc))


@dataclass(frozen=True)
class WindowDecision:
    """Whether a change is allowed now, and in words why (for the log and the metrics)."""

    allowed: bool
    reason: str
    rule: str | None = None  # the `allow`/`deny` expression or `pause_until` that decided

    @property
    def hold(self) -> str:
        """A short label of what holds changes: `pause`, `deny`, `outside_allow` or ``."""
        return "" if self.allowed else self.reason.split(":", 1)[0]


def change_allowed(windows: Windows | None, now: datetime) -> WindowDecision:
    """Decide for `now`: pause first, then deny rules, then allow rules."""
    if windows is None:
        return WindowDecision(True, "no windows configured")
    moment = _utc(now)
    if windows.pause_until is not None and moment < _utc(windows.pause_until):
        until = _utc(windows.pause_until).isoformat().replace("+00:00", "Z")
        return WindowDecision(False, f"pause: paused until {until}", until)
    denied = _first_match(windows.deny, moment)
    if denied is not None:
        return WindowDecision(False, f"deny: deny rule {denied!r} matches", denied)
    if not windows.allow:
        return WindowDecision(True, "no allow rules, no deny rule matches")
    allowed = _first_match(windows.allow, moment)
    if allowed is None:
        return WindowDecision(False, "outside_allow: no allow rule matches")
    return WindowDecision(True, f"allow rule {allowed!r} matches", allowed)


def _first_match(expressions: Iterable[str], moment: datetime) -> str | None:
    return next((rule for rule in expressions if cron_matches(rule, moment)), None)


def _utc(moment: datetime) -> datetime:
    """Aware datetimes are converted; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
