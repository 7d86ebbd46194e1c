"""One apply per account at a time.

Two applies interleaving on one account would each plan from a state the other is changing,
and could together overshoot a target. The lock is an OS file lock (`filelock`), so it is
released by the kernel when its holder dies: no stale lock survives a crash. Beside it a JSON
sidecar names the holder (pid, start time) so the second apply can say who to wait for. The
second apply never waits: it fails at once with `LockHeld`.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from reconciler.errors import LockHeld

__all__ = ["DEFAULT_STATE_DIR", "AccountLock", "LockHolder", "lock_path"]

DEFAULT_STATE_DIR = Path(".reconciler")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_path(user_id: str, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    """`<state_dir>/locks/<user>.lock`; the user id is reduced to file-name-safe characters."""
    name = _SAFE_NAME.sub("_", user_id) or "user"
    return state_dir / "locks" / f"{name}.lock"


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


class LockHolder:
    """Who holds a lock, as its sidecar says."""

    def __init__(self, pid: int | None, started_at_ms: int | None) -> None:
        self.pid = pid
        self.started_at_ms = started_at_ms

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        if self.started_at_ms is None:
            return who
        return f"{who} since {_iso(self.started_at_ms)}"


class AccountLock:
    """Non-blocking per-account lock; use as a context manager around a whole apply."""

    def __init__(self, user_id: str, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.user_id = user_id
        self.path = lock_path(user_id, state_dir)
        self.sidecar = self.path.with_name(self.path.name + ".json")
        self._lock = FileLock(self.path, timeout=0)

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> None:
        """Take the lock or raise `LockHeld` naming the holder; never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self.holder()
            raise LockHeld(
                f"another apply holds the lock for account {self.user_id!r}: "
                f"{holder.describe()} (lock file {self.path})"
            ) from None
        try:
            self._write_sidecar()
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        try:
            self.sidecar.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def holder(self) -> LockHolder:
        """The sidecar's holder; fields are None when it is missing or half written."""
        try:
            data: Any = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return LockHolder(None, None)
        if not isinstance(data, dict):
            return LockHolder(None, None)
        pid = data.get("pid")
        started = data.get("started_at_ms")
        return LockHolder(
            pid if isinstance(pid, int) else None,
            started if isinstance(started, int) else None,
        )

    def _write_sidecar(self) -> None:
        started_ms = time.time_ns() // 1_000_000
        payload = {
            "pid": os.getpid(),
            "started_at_ms": started_ms,
            "started_at": _iso(started_ms),
            "user_id": self.user_id,
        }
        temporary = self.sidecar.with_name(self.sidecar.name + f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(temporary, self.sidecar)

    def __enter__(self) -> AccountLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
