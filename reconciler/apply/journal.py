"""The apply journal: an append-only JSONL record of what apply meant to do and what happened.

Apply moves money, so after any run (finished, failed, interrupted or killed) someone must be
able to answer "what was sent, and what did the exchange do with it?" from a file alone. Each
record is written and flushed at once and fsync'd before it matters, so the file is truthful
even if the process dies a moment later. While calls are in flight the rule is write-ahead: a
call's intent record is on disk before the call is sent, and with it every record appended
before it (so the result of the symbol's previous call). Those records are made durable
together (`Journal.sync`, a group commit): the calls whose replies arrived together share one
`fsync`. On a disk where an `fsync` is quick it runs on the event loop, a fraction of a
millisecond; handing it to a worker thread cost each call a few milliseconds more, waiting
for the interpreter lock both ways, on the path every chained call waits on. While they take
longer than `SLOW_FSYNC_S` on average, the journal hands them to a worker thread instead, so
that a slow disk does not stall the other calls' replies (a single slow one among quick ones
still holds the loop once, for as long as it takes). A result appended after the last
such `fsync` is on disk with the next intent or the run's next own record (`write` fsyncs at
once); a crash in between leaves an intent without a result, which reads as what it is:
sent, outcome not recorded.

The one exception is a rehearsal (`reconciler.run.rehearse`): its journal lives in a scratch
directory deleted when it ends and records calls to an in-process copy, so nothing survives
a crash that it could vouch for, and `durable=False` skips the fsyncs (a few hundred of them
were a large share of a rehearsal's time). A real apply never passes it.

The journal holds requests as the plan showed them (method, path below the API prefix, body)
and the exchange's status, code and data. It never holds a header, a signature or a secret:
apply never has them, the client keeps them to itself. `docs/apply.md` lists every record type.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import anyio
import anyio.lowlevel
import anyio.to_thread

from reconciler import jsonnum

__all__ = [
    "JOURNAL_FORMAT",
    "SLOW_FSYNC_S",
    "Journal",
    "Outcome",
    "RecordType",
    "journal_file_name",
    "read_journal",
]

JOURNAL_FORMAT = 1

# While `fsync`s take longer than this on average, they run in a worker thread.
SLOW_FSYNC_S = 0.002
# The weight of the latest `fsync` in that average: one slow one among quick ones is noise.
_FSYNC_AVERAGE_WEIGHT = 0.25

# What happened to one planned call. `unknown` is only final when settlement could not tell.
Outcome = Literal[
    "accepted",
    "rejected",
    "unknown",
    "not_sent",
    "settled_executed",
    "settled_not_executed",
]

RecordType = Literal[
    "start",
    "precondition",
    "plan",
    "intent",
    "result",
    "settlement",
    "verification",
    "interrupted",
    "end",
]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def journal_file_name(user_id: str, started_ms: int, pid: int) -> str:
    """`20250101T120000.123Z-<user>-<pid>.jsonl`: sorts by start time, unique per process."""
    stamp = datetime.fromtimestamp(started_ms / 1000, tz=UTC)
    text = stamp.strftime("%Y%m%dT%H%M%S") + f".{started_ms % 1000:03d}Z"
    user = _SAFE_NAME.sub("_", user_id) or "user"
    return f"{text}-{user}-{pid}.jsonl"


class Journal:
    """One apply's JSONL file. Every `write` is durable before it returns, every `append` once
    `sync` returns (unless `durable=False`).

    Records carry `seq` (1, 2, …, no gaps), `type` and `time_ms`, then the record's own
    fields. Numbers are written from `Decimal` exactly, as on the wire.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], int] = _now_ms,
        durable: bool = True,
        fsync_on_loop: bool = True,
    ) -> None:
        self.path = path
        self.durable = durable
        self._clock = clock
        self._seq = 0
        self._synced_seq = 0  # every record up to this one is on disk
        self._may_fsync_on_loop = fsync_on_loop
        self._fsync_s = 0.0  # the moving average of this file's fsyncs' durations
        # The first fsync that failed. Linux reports a lost write-back to one fsync only, and a
        # later one may then succeed without the lost pages: from here on, nothing is durable.
        self._fsync_failed: OSError | None = None
        self._batch: anyio.Event | None = None  # the on-loop `fsync` that callers now join
        self._sync_lock = anyio.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a journal is never appended to by a second run, nor silently overwritten.
        # 0600 like a saved plan: it holds the account's positions, orders and amounts.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[bytes] | None = os.fdopen(descriptor, "wb")
        if durable:
            _fsync_dir(path.parent)

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        user_id: str,
        clock: Callable[[], int] = _now_ms,
        durable: bool = True,
    ) -> Journal:
        """A new journal file in `directory`, named after the user, start time and pid."""
        name = journal_file_name(user_id, clock(), os.getpid())
        return cls(directory / name, clock=clock, durable=durable)

    @property
    def fsync_on_loop(self) -> bool:
        """Whether `sync`'s next `fsync` runs on the event loop (quick ones do, see above)."""
        return self._may_fsync_on_loop and self._fsync_s <= SLOW_FSYNC_S

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, type: RecordType, **fields: Any) -> dict[str, Any]:
        """Append one record and make it durable (flushed only, if not `durable`).

        This blocks on `fsync`: for the run's own records (start, plans, end), written when
        no call is in flight. Records written while calls are in flight use `append` and
        `sync`, so that one call's `fsync` does not stall the others' replies."""
        record = self.append(type, **fields)
        if self.durable and self._file is not None:
            self._fsync(self._file.fileno())
            self._synced_seq = self._seq
        return record

    def append(self, type: RecordType, **fields: Any) -> dict[str, Any]:
        """Append one record, flushed (readable by another handle at once) but not yet
        durable: `await sync()` makes it so, and so does `close`."""
        if self._file is None:
            raise ValueError(f"journal {self.path} is closed")
        self._seq += 1
        record: dict[str, Any] = {"seq": self._seq, "type": type, "time_ms": self._clock()}
        record.update(fields)
        self._file.write(jsonnum.dumps(record) + b"\n")
        self._file.flush()
        return record

    async def sync(self) -> None:
        """Return once every record appended before this call is durable.

        Callers share `fsync`s (a group commit): with 16 calls in flight, one makes several of
        their records durable. On the loop, the first caller lets the loop finish the replies
        it has in hand (each appends its record and joins) and then syncs them all; in the
        worker thread, the callers that arrive while one runs share the next. Either way a
        caller returns only once an `fsync` that began after its record was written has
        ended. Once an `fsync` has failed, every later `sync` and `write` fails too (`OSError`),
        the callers that had joined the failed one included: its records may be lost even if
        a later `fsync` succeeds."""
        target = self._seq
        if self._fsync_failed is not None:
            self._refuse()
        if not self.durable or self._synced_seq >= target:
            return
        if self.fsync_on_loop:
            await self._sync_on_loop(target)
        else:
            await self._sync_in_thread(target)

    async def _sync_on_loop(self, target: int) -> None:
        batch = self._batch
        if batch is not None:
            await batch.wait()
            if self._synced_seq < target:  # that fsync failed (`sync` raises), or none ran
                await self.sync()
            return
        batch = self._batch = anyio.Event()
        try:
            # Shielded: the caller's record must be durable before it may go on either way.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            self._batch = None  # from here on, a record appended waits for the next fsync
            if self._file is not None and self._synced_seq < self._seq:
                covered = self._seq
                self._timed_fsync(self._file.fileno())
                self._synced_seq = max(self._synced_seq, covered)
        finally:
            self._batch = None
            batch.set()

    async def _sync_in_thread(self, target: int) -> None:
        async with self._sync_lock:
            if self._synced_seq >= target or self._file is None:
                return
            covered = self._seq  # written and flushed before this fsync starts
            await anyio.to_thread.run_sync(self._timed_fsync, self._file.fileno())
            self._synced_seq = max(self._synced_seq, covered)

    def _timed_fsync(self, descriptor: int) -> None:
        started = time.perf_counter()
        self._fsync(descriptor)
        elapsed = time.perf_counter() - started
        self._fsync_s += (elapsed - self._fsync_s) * _FSYNC_AVERAGE_WEIGHT

    def _fsync(self, descriptor: int) -> None:
        if self._fsync_failed is not None:
            self._refuse()
        try:
            os.fsync(descriptor)
        except OSError as error:
            self._fsync_failed = error
            raise

    def _refuse(self) -> NoReturn:
        failed = self._fsync_failed
        assert failed is not None
        raise OSError(
            failed.errno,
            f"the journal {self.path} could not be made durable ({failed.strerror or failed}); "
            "no record since can be vouched for",
        ) from failed

    def close(self) -> None:
        if self._file is not None:
            try:
                if self.durable and self._synced_seq < self._seq:
                    self._fsync(self._file.fileno())
                    self._synced_seq = self._seq
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    """Make the new file's directory entry durable too (a no-op where directories can't sync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All complete records of a journal; a torn last line (killed mid-write) is skipped."""
    return list(_iter_records(path))


def _iter_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            record = jsonnum.loads(line)
            if isinstance(record, dict):
                yield record
