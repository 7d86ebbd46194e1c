"""What apply needs from a venue, stated as protocols: the core's only view of an exchange.

A venue adapter (`reconciler.levret`) satisfies them: it reads the account into the domain
(`SnapshotReader`), answers the reads settlement asks (`SettleClient`), makes the exact call
of an intent (`Venue.request_for`) and carries it out (`Venue.execute`). Apply never sees a
path, a field name or a body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from reconciler.apply.settle import SettleClient
from reconciler.model.intents import Answer, Intent
from reconciler.model.plan import Plan, Request
from reconciler.model.snapshot import Snapshot

__all__ = ["Planner", "SnapshotReader", "Venue"]

D = TypeVar("D")
C = TypeVar("C", bound="Venue")
D_contra = TypeVar("D_contra", contravariant=True)
C_contra = TypeVar("C_contra", contravariant=True)


class Venue(SettleClient, Protocol):
    """What apply needs from a venue: the settlement reads, and intents carried out.

    `request_for` is the exact call the venue makes of an intent (journalled before it is
    sent); `execute` sends it and reads the answer into the domain.
    """

    def request_for(self, intent: Intent) -> Request: ...

    async def execute(self, intent: Intent) -> Answer: ...


class SnapshotReader(Protocol[C_contra, D_contra]):
    """`reconciler.levret.reader.read_snapshot`: read the account (optionally only some
    symbols; `books=False` without the book tops, which only planning reads)."""

    def __call__(
        self,
        client: C_contra,
        desired: D_contra,
        /,
        *,
        symbols: Iterable[str] | None = None,
        books: bool = True,
    ) -> Awaitable[Snapshot]: ...


Planner = Callable[[D, Snapshot], Plan]
