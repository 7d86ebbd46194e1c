"""The journal file itself: ordered, durable records with exact numbers."""

from __future__ import annotations

import os
import threading
import time
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from reconciler.apply.journal import SLOW_FSYNC_S, Journal, journal_file_name, read_journal


def test_records_are_numbered_in_order_with_exact_numbers(tmp_path: Path) -> None:
    clock = iter(range(1000, 2000))
    with Journal(tmp_path / "j.jsonl", clock=lambda: next(clock)) as journal:
        journal.write("plan", plan={"size": Decimal("0.1")})
        journal.write("intent", request={"method": "POST", "path": "/order", "body": None})
        journal.write("end", converged=True)
    assert read_journal(tmp_path / "j.jsonl") == [
        {"seq": 1, "type": "plan", "time_ms": 1000, "plan": {"size": Decimal("0.1")}},
        {
            "seq": 2,
            "type": "intent",
            "time_ms": 1001,
            "request": {"method": "POST", "path": "/order", "body": None},
        },
        {"seq": 3, "type": "end", "time_ms": 1002, "converged": True},
    ]
    assert b'"size":0.1' in (tmp_path / "j.jsonl").read_bytes()


def test_each_record_is_on_disk_before_write_returns(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.write("plan", plan={})
    # Read through a separate handle while the journal is still open: nothing is buffered.
    assert len(read_journal(tmp_path / "j.jsonl")) == 1
    journal.close()
    with pytest.raises(ValueError):
        journal.write("end")


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.write("plan", plan={})
    with path.open("ab") as handle:
        handle.write(b'{"seq":2,"type":"int')
    assert [r["seq"] for r in read_journal(path)] == [1]


def test_an_existing_journal_is_never_overwritten(tmp_path: Path) -> None:
    Journal(tmp_path / "j.jsonl").close()
    with pytest.raises(FileExistsError):
        Journal(tmp_path / "j.jsonl")


def test_created_names_sort_by_start_and_are_file_safe(tmp_path: Path) -> None:
    assert journal_file_name("a/b c", 1_735_732_800_123, 42) == (
        "20250101T120000.123Z-a_b_c-42.jsonl"
    )
    journal = Journal.create(tmp_path / "journal", user_id="demo", clock=lambda: 0)
    journal.close()
    assert journal.path.parent == tmp_path / "journal"
    assert journal.path.name.endswith(".jsonl")


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(descriptor: int) -> None:
        calls.append(descriptor)
        real(descriptor)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_every_record_of_a_durable_journal_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    with Journal(tmp_path / "j.jsonl") as journal:
        assert journal.durable
        journal.write("plan", plan={})
        journal.write("end", converged=True)
    assert len(calls) == 3  # the directory entry, then each record


def test_a_scratch_journal_skips_the_fsyncs_but_is_still_readable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    journal = Journal.create(tmp_path, user_id="demo", durable=False)
    journal.write("plan", plan={"size": Decimal("0.1")})
    assert [r["seq"] for r in read_journal(journal.path)] == [1]  # flushed, not buffered
    journal.close()
    assert calls == []


def _line_ends(path: Path) -> list[int]:
    """The byte offset just past each record of the file."""
    ends, total = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        total += len(line)
        ends.append(total)
    return ends


@pytest.mark.anyio
async def test_in_the_thread_sync_returns_once_its_records_are_on_disk_and_waiters_share_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three calls append and sync while the first `fsync` is held in the worker thread: the
    two that arrive during it share the next one, and none returns before an `fsync` that
    began after its record was written has finished."""
    journal = Journal(tmp_path / "j.jsonl", fsync_on_loop=False)
    real = os.fsync
    first_started, release_first = threading.Event(), threading.Event()
    synced_bytes: list[int] = []  # bytes in the file as each finished fsync began

    def held_fsync(descriptor: int) -> None:
        size = os.fstat(descriptor).st_size
        if not first_started.is_set():
            first_started.set()
            release_first.wait()
        real(descriptor)
        synced_bytes.append(size)

    monkeypatch.setattr(os, "fsync", held_fsync)
    returned: dict[str, int] = {}  # who returned, and how many fsyncs had finished then

    async def append_and_sync(name: str) -> None:
        journal.append("intent", name=name)
        await journal.sync()
        returned[name] = len(synced_bytes)

    async with anyio.create_task_group() as group:
        group.start_soon(append_and_sync, "a")
        await anyio.to_thread.run_sync(first_started.wait)
        group.start_soon(append_and_sync, "b")
        group.start_soon(append_and_sync, "c")
        await anyio.wait_all_tasks_blocked()
        assert returned == {}  # all three wait while the first fsync is held
        release_first.set()
    ends = _line_ends(journal.path)
    assert synced_bytes == [ends[0], ends[2]]  # "a" alone, then "b" and "c" together
    assert returned == {"a": 1, "b": 2, "c": 2}
    journal.close()
    assert len(synced_bytes) == 2  # close had nothing left to sync


@pytest.mark.anyio
async def test_on_the_loop_the_calls_of_one_round_share_one_fsync_that_covers_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies handled in one pass of the loop each append and sync: the first caller lets
    the others append first, so one `fsync` covers all of them, and none returns before it.
    A caller after it needs an `fsync` of its own."""
    journal = Journal(tmp_path / "j.jsonl")
    real = os.fsync
    synced_bytes: list[int] = []

    def recording(descriptor: int) -> None:
        synced_bytes.append(os.fstat(descriptor).st_size)
        real(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    returned: dict[str, int] = {}

    async def append_and_sync(name: str) -> None:
        journal.append("intent", name=name)
        await journal.sync()
        returned[name] = len(synced_bytes)

    async with anyio.create_task_group() as group:
        for name in "abc":
            group.start_soon(append_and_sync, name)
    assert synced_bytes == [_line_ends(journal.path)[2]]
    assert returned == {"a": 1, "b": 1, "c": 1}
    await append_and_sync("d")
    assert synced_bytes == _line_ends(journal.path)[2:]
    assert returned["d"] == 2
    assert journal.fsync_on_loop  # each was quick
    journal.close()


@pytest.mark.anyio
async def test_while_fsyncs_are_slow_on_average_they_run_in_the_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slow `fsync` among quick ones stays on the loop; a run of slow ones moves to the
    worker thread (a slow disk must not stall the loop); quick ones again bring it back."""
    journal = Journal(tmp_path / "j.jsonl")
    real = os.fsync
    loop_thread = threading.get_ident()
    slow = [False]
    on_loop: list[bool] = []  # per fsync: did it run on the loop's thread?

    def disk(descriptor: int) -> None:
        on_loop.append(threading.get_ident() == loop_thread)
        if slow[0]:
            time.sleep(SLOW_FSYNC_S * 2)  # the disk's own slowness, not a wait for anything
        real(descriptor)

    monkeypatch.setattr(os, "fsync", disk)

    async def syncs(count: int) -> None:
        for index in range(count):
            journal.append("intent", index=index)
            await journal.sync()

    slow[0] = True
    await syncs(1)
    assert journal.fsync_on_loop  # one slow fsync is noise
    await syncs(4)
    assert not journal.fsync_on_loop
    slow[0] = False
    await syncs(8)
    assert journal.fsync_on_loop
    loop_runs = "".join("L" if here else "T" for here in on_loop)
    assert loop_runs.startswith("LLL") and "T" in loop_runs and loop_runs.endswith("L")
    monkeypatch.undo()
    journal.close()


@pytest.mark.anyio
@pytest.mark.parametrize("fsync_on_loop", [True, False])
async def test_after_a_failed_fsync_no_caller_is_told_its_record_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync_on_loop: bool
) -> None:
    """Linux reports a lost write-back to one `fsync` only; the next one may succeed while
    the pages it was to write are gone. So the callers that joined the failed one, and every
    caller after it, fail too, though a second `fsync` would have returned."""
    journal = Journal(tmp_path / "j.jsonl", fsync_on_loop=fsync_on_loop)
    real = os.fsync
    fsyncs: list[int] = []

    def failing_once(descriptor: int) -> None:
        fsyncs.append(descriptor)
        if len(fsyncs) == 1:
            raise OSError(5, "Input/output error")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", failing_once)
    failed: list[str] = []

    async def append_and_sync(name: str) -> None:
        journal.append("intent", name=name)
        try:
            await journal.sync()
        except OSError as error:
            assert "could not be made durable" in str(error) or error.errno == 5
            failed.append(name)

    async with anyio.create_task_group() as group:
        for name in "abc":
            group.start_soon(append_and_sync, name)
    await append_and_sync("d")
    assert sorted(failed) == ["a", "b", "c", "d"]
    with pytest.raises(OSError, match="could not be made durable"):
        journal.write("end", converged=False)
    with pytest.raises(OSError, match="could not be made durable"):
        journal.close()
    assert journal.closed and len(fsyncs) == 1  # none after the failed one


def test_close_makes_appended_records_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    calls = _count_fsyncs(monkeypatch)
    journal.append("result", index=0)
    journal.append("result", index=1)
    assert calls == []  # appended, flushed, not yet synced
    assert len(read_journal(journal.path)) == 2
    journal.close()
    assert len(calls) == 1


@pytest.mark.anyio
async def test_a_scratch_journal_syncs_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    with Journal(tmp_path / "j.jsonl", durable=False) as journal:
        journal.append("intent", index=0)
        await journal.sync()
    assert calls == []
