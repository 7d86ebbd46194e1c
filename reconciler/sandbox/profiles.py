"""Named bundles of realism knobs: `ideal` (every write visible at once, fills at the mark)
and `realistic` (what real venues do to a client).

A profile is the base layer of the fault profile: `POST /_sandbox/faults` sets faults on top
of it (a key given there wins), `{}` goes back to the profile alone, and `POST
/_sandbox/reset` keeps it. `POST /_sandbox/profile` switches it (clearing other faults);
`reconciler sandbox serve --profile` and `--sandbox-profile` choose it at start. `ideal` is
the default until the reconciler is proven under `realistic`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_PROFILE", "PROFILES", "profile_knobs"]

DEFAULT_PROFILE = "ideal"

PROFILES: dict[str, dict[str, Any]] = {
    "ideal": {},
    "realistic": {
        "read_lag_ms": 1500,
        "book_depth": True,
        "resting_partial_fills": True,
        "stop_slippage": True,
    },
}


def profile_knobs(name: str) -> dict[str, Any]:
    """The fault knobs of profile `name`; `ValueError` naming the known ones otherwise."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    return dict(PROFILES[name])
