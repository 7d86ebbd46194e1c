"""The desired-state file as watch reads it: re-read when it changes, one-shot orders refused.

A person changes the file while the watcher runs (to set `pause_until`, to add a symbol), so
each cycle asks for the file again and gets the new version once it validates.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reconciler.errors import SpecError
from reconciler.model.desired import DesiredState, load
from reconciler.run.workflow import narrow

__all__ = ["DesiredFile"]


class DesiredFile:
    """The desired-state file, re-read when it changes on disk (e.g. to set `pause_until`).

    A change that does not validate raises `SpecError` on every call until it is fixed; the
    watcher then keeps working from the last good version and says so in the log.
    """

    def __init__(self, path: Path, targets: Iterable[str] = ()) -> None:
        self.path = path
        self.targets = tuple(targets)
        self._stamp: tuple[int, int] | None = None
        self._state: DesiredState | SpecError | None = None

    def __call__(self) -> DesiredState:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise SpecError([f"{self.path}: cannot read: {exc.strerror}"]) from None
        if stamp != self._stamp or self._state is None:
            self._stamp = stamp
            try:
                self._state = _without_one_shots(narrow(load(self.path), self.targets))
            except SpecError as exc:
                self._state = exc
        if isinstance(self._state, SpecError):
            raise self._state
        return self._state


def _without_one_shots(desired: DesiredState) -> DesiredState:
    """Refuse a file with `taker: true` orders: watch would send them again every cycle.

    A taker order fills at once and never rests, so each heal would see it missing and buy
    (or sell) once more, without end. It belongs in a file given to one `apply`.
    """
    problems = [
        desired.problem(
            ("symbols", symbol, "orders", index, "taker"),
            "a taker order fills at once and never rests, so watch would send it every "
            "cycle; remove it here and place it with one apply",
        )
        for symbol, entry in desired.symbols.items()
        for index, order in enumerate(entry.orders or ())
        if order.taker
    ]
    if problems:
        raise SpecError(problems)
    return desired
