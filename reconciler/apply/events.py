"""What apply tells whoever watches it: events, and the sink they go to.

Apply emits events; it never prints. A sink decides how they look (`reconciler.render.progress`
draws them); `NullProgress` discards them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reconciler.apply.journal import Outcome
from reconciler.model.plan import Action

__all__ = [
    "ActionFinished",
    "ActionStarted",
    "ApplyEvent",
    "ApplyFinished",
    "NullProgress",
    "PassStarted",
    "ProgressSink",
    "Settling",
    "Verified",
]


@dataclass(frozen=True)
class PassStarted:
    number: int
    actions: int
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class ActionStarted:
    pass_number: int
    index: int
    action: Action
    path: str


@dataclass(frozen=True)
class Settling:
    """A call's outcome is unknown; apply is reading the account to learn it."""

    pass_number: int
    index: int
    action: Action


@dataclass(frozen=True)
class ActionFinished:
    pass_number: int
    index: int
    action: Action
    outcome: Outcome
    detail: str
    latency_ms: float | None


@dataclass(frozen=True)
class Verified:
    """The account was re-read and re-planned after a pass."""

    pass_number: int
    remaining: int
    converged: bool


@dataclass(frozen=True)
class ApplyFinished:
    converged: bool
    interrupted: bool
    passes: int
    summary: str


ApplyEvent = PassStarted | ActionStarted | Settling | ActionFinished | Verified | ApplyFinished


class ProgressSink(Protocol):
    """Receives every event; must not raise and must not block (it runs on the event loop)."""

    def __call__(self, event: ApplyEvent) -> None: ...


class NullProgress:
    def __call__(self, event: ApplyEvent) -> None:
        return None
