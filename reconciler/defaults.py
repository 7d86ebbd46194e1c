"""Names and defaults the command line shows in its help, in a module that imports nothing.

`reconciler --help` and every `COMMAND --help` render these; if they lived next to the code
that uses them (the lock package, the apply engine) every help screen would load that code,
pydantic and the HTTP client first. Those modules re-export them, so there is one value.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "DEFAULT_MAX_PASSES",
    "DEFAULT_MAX_PLAN_AGE_MS",
    "DEFAULT_MAX_PRICE_MOVE_BPS",
    "DEFAULT_PARALLELISM",
    "ENV_LOCK_DSN",
]

ENV_LOCK_DSN = "RECONCILER_LOCK_DSN"
"""The environment variable naming the PostgreSQL server of a shared account lock."""

DEFAULT_MAX_PRICE_MOVE_BPS = Decimal(100)
"""How far (basis points) the marks may move before a saved plan is refused as stale."""

DEFAULT_PARALLELISM = 16
"""Symbols worked on at once within a phase: the exchange's budget, not this, sets the pace."""

DEFAULT_MAX_PASSES = 3
"""Verification passes after the first: each re-reads, re-plans and sends what is left."""

DEFAULT_MAX_PLAN_AGE_MS = 15 * 60 * 1000
"""How old a saved plan may be when it is applied (`--max-age`)."""
