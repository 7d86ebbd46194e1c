"""One apply per account at a time, wherever it runs: the key, the holder and the wait.

Two applies interleaving on one account would each plan from a state the other is changing,
and could together overshoot a target. So the lock belongs to the *account*, the exchange's
base URL and the user id (`LockKey`), never to a working directory: two checkouts on one
host, or two CI runners sharing a lock server, exclude each other.

A backend (`LockBackend`) does the excluding: a file lock for one host
(`reconciler.run.lock.file`), a PostgreSQL advisory lock for every runner that shares the server
(`reconciler.run.lock.postgres`). Both are released by someone other than the holder when the
holder dies (the kernel, the database server), so no stale lock survives a crash. Both can
tell a second apply who holds the lock (`Holder`: host, pid, start time, CI run id).

`AccountLock` wraps a backend: it tries once, or with a timeout polls with backoff until
the lock is free, then raises `LockHeld` (exit 6) naming the holder. It is reentrant, so a
command can take it before it plans and `run_apply`'s own `async with` is then a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from reconciler.errors import LockHeld

__all__ = ["AccountLock", "Holder", "LockBackend", "LockKey"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# GitHub Actions and GitLab CI name the run a lock holder belongs to.
CI_RUN_VARIABLES = ("GITHUB_RUN_ID", "CI_JOB_ID")
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _safe(text: str, limit: int) -> str:
    return _SAFE.sub("_", text)[:limit] or "_"


@dataclass(frozen=True)
class LockKey:
    """The account a lock protects: the base URL (scheme, host, path; case and a trailing
    slash do not matter) and the user id."""

    base_url: str
    user_id: str

    @property
    def canonical(self) -> str:
        parts = urlsplit(self.base_url.strip())
        base = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
        return f"{base}\n{self.user_id}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(b"reconciler-lock\0" + self.canonical.encode("utf-8")).hexdigest()

    @property
    def advisory_key(self) -> int:
        """A signed 64-bit number for `pg_try_advisory_lock(bigint)`."""
        return int.from_bytes(bytes.fromhex(self.digest[:16]), "big", signed=True)

    @property
    def file_stem(self) -> str:
        """`<user>@<host>-<digest>`: readable, and unique because of the digest."""
        parts = urlsplit(self.base_url.strip())
        host = parts.netloc.lower() or parts.scheme.lower()
        return f"{_safe(self.user_id, 40)}@{_safe(host, 60)}-{self.digest[:24]}"

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"account {self.user_id!r}{where}"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock; any field may be unknown (a half-written record, a truncated name)."""

    pid: int | None = None
    host: str | None = None
    started_at_ms: int | None = None
    ci_run: str | None = None

    @classmethod
    def me(cls, environ: Mapping[str, str] | None = None) -> Holder:
        env = os.environ if environ is None else environ
        ci_run = next((env[name] for name in CI_RUN_VARIABLES if env.get(name)), None)
        return cls(os.getpid(), socket.gethostname(), time.time_ns() // 1_000_000, ci_run)

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        if self.host:
            who += f" on {self.host}"
        if self.started_at_ms is not None:
            who += f" since {_iso(self.started_at_ms)}"
        if self.ci_run:
            who += f" (CI run {self.ci_run})"
        return who

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pid": self.pid,
            "host": self.host,
            "started_at_ms": self.started_at_ms,
            "ci_run": self.ci_run,
        }
        if self.started_at_ms is not None:
            data["started_at"] = _iso(self.started_at_ms)
        return data

    @classmethod
    def from_json(cls, text: str) -> Holder:
        """Whatever a record says; fields of the wrong type are unknown."""
        try:
            data: Any = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()

        def typed(name: str, kind: type) -> Any:
            value = data.get(name)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(typed("pid", int), typed("host", str), typed("started_at_ms", int),
                   typed("ci_run", str))  # fmt: skip


class LockBackend(Protocol):
    """One kind of lock. `where` names it in messages and must never hold a secret.

    `tries_on_loop` is true for a backend whose tries never wait on anything but the local
    disk (a non-blocking file lock): `AccountLock.acquire` then tries on the event loop, not
    in a worker thread (whose start and interpreter-lock hand-offs cost an apply 5 to 8 ms
    before its first read)."""

    where: str
    tries_on_loop: bool

    def try_acquire(self, me: Holder) -> bool:
        """Take the lock now, recording `me` as its holder, or return False; never waits."""
        ...

    def holder(self) -> Holder | None:
        """Who holds it now, if anyone can tell."""
        ...

    def release(self) -> None:
        """Let go of a held lock; safe to call when not held."""
        ...


def _delays() -> Iterator[float]:
    delay = FIRST_DELAY_S
    while True:
        yield delay
        delay = min(delay * 2, MAX_DELAY_S)


class AccountLock:
    """The lock of one account; use as a (sync or async) context manager around an apply.

    `timeout_s` 0 fails at once; more polls with backoff (50 ms doubling up to 1 s) until
    that long has passed. `on_wait` hears once, with the holder, that we are waiting.
    """

    def __init__(
        self,
        key: LockKey,
        backend: LockBackend,
        *,
        timeout_s: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s < 0:
            raise ValueError("timeout_s must not be negative")
        self.key = key
        self.backend = backend
        self.timeout_s = timeout_s
        self._on_wait = on_wait
        self._clock = clock
        self._depth = 0
        self._me = Holder.me()

    @property
    def is_locked(self) -> bool:
        return self._depth > 0

    def holder(self) -> Holder | None:
        return self.backend.holder()

    # -- taking it

    def acquire_blocking(self) -> None:
        """Take the lock (waiting up to `timeout_s`) or raise `LockHeld`; for sync callers."""
        if self._depth:
            self._depth += 1
            return
        started = self._clock()
        try:
            for delay in _delays():
                if self.backend.try_acquire(self._me):
                    self._depth = 1
                    return
                remaining = self._remaining(started)
                if remaining <= 0:
                    raise self._refused(started)
                self._waiting()
                time.sleep(min(delay, remaining))
        except BaseException:
            self.backend.release()  # a refused try may have left a connection open
            raise

    async def acquire(self) -> None:
        """As `acquire_blocking`, without blocking the event loop (tries run in a thread)."""
        if self._depth:
            self._depth += 1
            return
        started = self._clock()
        try:
            for delay in _delays():
                if self.backend.tries_on_loop:
                    taken = self.backend.try_acquire(self._me)
                else:
                    taken = await anyio.to_thread.run_sync(self.backend.try_acquire, self._me)
                if taken:
                    self._depth = 1
                    return
                remaining = self._remaining(started)
                if remaining <= 0:
                    raise self._refused(started)
                self._waiting()
                await anyio.sleep(min(delay, remaining))
        except BaseException:
            self.backend.release()
            raise

    def release(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            self.backend.release()

    def _remaining(self, started: float) -> float:
        return self.timeout_s - (self._clock() - started)

    def _waiting(self) -> None:
        if self._on_wait is not None:
            callback, self._on_wait = self._on_wait, None
            callback(
                f"Waiting up to {self.timeout_s:g} s for the lock of {self.key.describe()}, "
                f"held by {self._holder_text()}."
            )

    def _holder_text(self) -> str:
        holder = self.backend.holder()
        return holder.describe() if holder is not None else "an apply that just finished"

    def _refused(self, started: float) -> LockHeld:
        waited = self._clock() - started
        after = f" (waited {waited:.0f} s)" if self.timeout_s > 0 else ""
        return LockHeld(
            f"another apply holds the lock for {self.key.describe()}: "
            f"{self._holder_text()}; {self.backend.where}{after}"
        )

    # -- context managers

    def __enter__(self) -> AccountLock:
        self.acquire_blocking()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> AccountLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
