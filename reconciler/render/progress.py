"""How apply's events look to a watching person (the events: `reconciler.apply.events`).

`RichProgress` draws a progress bar on a terminal, `PlainProgress` writes one line per event
for CI logs (greppable, no control characters). The CLI picks one.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from reconciler.apply.events import (
    ActionFinished,
    ActionStarted,
    ApplyEvent,
    ApplyFinished,
    PassStarted,
    Settling,
    Verified,
)
from reconciler.model.plan import Action

__all__ = ["PlainProgress", "RichProgress"]


def _describe(action: Action) -> str:
    return f"{action.symbol} {action.kind} ({action.reason})"


class PlainProgress:
    """One line per event, for logs: `apply: pass 1 [3/7] BTC_USDT place_order … accepted`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._total = 0
        self._done = 0

    def _line(self, text: str) -> None:
        self._stream.write(f"apply: {text}\n")
        self._stream.flush()

    def __call__(self, event: ApplyEvent) -> None:
        if isinstance(event, PassStarted):
            self._total, self._done = event.actions, 0
            self._line(
                f"pass {event.number}: {event.actions} action(s) on {len(event.symbols)} symbol(s)"
            )
        elif isinstance(event, Settling):
            self._line(
                f"pass {event.pass_number}: outcome unknown, checking the account: "
                f"{_describe(event.action)}"
            )
        elif isinstance(event, ActionFinished):
            self._done += 1
            latency = f" in {event.latency_ms:.0f} ms" if event.latency_ms is not None else ""
            detail = f": {event.detail}" if event.detail else ""
            self._line(
                f"pass {event.pass_number} [{self._done}/{self._total}] "
                f"{_describe(event.action)} -> {event.outcome}{latency}{detail}"
            )
        elif isinstance(event, Verified):
            state = "converged" if event.converged else f"{event.remaining} action(s) remain"
            self._line(f"pass {event.pass_number}: verified, {state}")
        elif isinstance(event, ApplyFinished):
            self._line(event.summary)


class RichProgress:
    """A live progress bar on a terminal; use as a context manager around the apply."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._console = Console(file=stream if stream is not None else sys.stderr)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            console=self._console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def __call__(self, event: ApplyEvent) -> None:
        if isinstance(event, PassStarted):
            if self._task is not None:
                self._progress.update(self._task, visible=True)
            self._task = self._progress.add_task(
                f"pass {event.number}", total=event.actions, current=""
            )
        elif isinstance(event, ActionStarted) and self._task is not None:
            self._progress.update(self._task, current=_describe(event.action))
        elif isinstance(event, Settling) and self._task is not None:
            self._progress.update(
                self._task, current=f"checking outcome of {_describe(event.action)}"
            )
        elif isinstance(event, ActionFinished):
            if event.outcome not in ("accepted", "settled_executed"):
                style = "yellow" if event.outcome != "rejected" else "red"
                detail = f": {event.detail}" if event.detail else ""
                text = f"{_describe(event.action)} -> {event.outcome}{detail}"
                self._console.print(text, style=style, markup=False, highlight=False)
            if self._task is not None:
                self._progress.advance(self._task)
        elif isinstance(event, Verified) and self._task is not None:
            state = "converged" if event.converged else f"{event.remaining} remain"
            self._progress.update(self._task, current=f"verified: {state}")
        elif isinstance(event, ApplyFinished):
            self._console.print(event.summary, markup=False, highlight=False)
