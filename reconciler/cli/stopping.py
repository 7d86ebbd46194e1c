"""SIGTERM and SIGHUP stop `apply` the way Ctrl-C does, instead of killing it mid-call.

A CI cancellation or `docker stop` sends SIGTERM; a closed SSH session sends SIGHUP. Their
default is to end the process at once, which leaves intents without results, no `end`
record in the journal and the lock's sidecar behind. Relayed as SIGINT, they take the one
path Ctrl-C already takes: asyncio cancels the apply, no new call starts, calls in flight
finish (their sends are shielded) and are journaled, the journal gets `interrupted` and
`end`, and the lock is released as the stack unwinds.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "stop_signals_like_ctrl_c"]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _relay(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    # os.write, not print: a signal handler may run while sys.stderr is mid-write.
    os.write(2, f"{name} received: stopping like Ctrl-C; no new call starts.\n".encode())
    signal.raise_signal(signal.SIGINT)


@contextmanager
def stop_signals_like_ctrl_c() -> Iterator[None]:
    """For the duration, SIGTERM and SIGHUP raise SIGINT; the previous handlers come back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {signum: signal.signal(signum, _relay) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
