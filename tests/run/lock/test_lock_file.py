"""The default lock: one file per account in the user's state directory, for one host."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import platformdirs
import pytest
from lock_support import BASE_URL, holding

from reconciler.errors import LockHeld
from reconciler.run.lock import ENV_STATE_DIR, AccountLock, LockKey, account_lock, lock_directory
from reconciler.run.lock.file import FileBackend


def file_lock(user_id: str = "demo", base_url: str = BASE_URL, **kwargs: object) -> AccountLock:
    lock = account_lock(None, base_url=base_url, user_id=user_id, **kwargs)  # type: ignore[arg-type]
    assert isinstance(lock.backend, FileBackend)
    return lock


def test_second_holder_fails_at_once_naming_pid_host_and_start() -> None:
    with file_lock() as first:
        assert first.is_locked
        backend = first.backend
        assert isinstance(backend, FileBackend)
        sidecar = json.loads(backend.sidecar.read_text())
        assert sidecar["pid"] == os.getpid() and sidecar["host"] == socket.gethostname()
        with pytest.raises(LockHeld) as held:
            file_lock().acquire_blocking()
    message = str(held.value)
    assert held.value.exit_code == 6
    assert f"pid {os.getpid()} on {socket.gethostname()} since {sidecar['started_at']}" in message
    assert "account 'demo' at https://api.levret.io/api/v1" in message
    assert str(backend.path) in message
    assert not backend.sidecar.exists()
    with file_lock():  # free again once released
        pass


def test_the_lock_belongs_to_the_account_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock_state_dir: Path
) -> None:
    paths = []
    for name in ("checkout-a", "checkout-b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        backend = file_lock().backend
        assert isinstance(backend, FileBackend)
        paths.append(backend.path)
    assert paths[0] == paths[1] and paths[0].parent == lock_state_dir / "locks"
    assert paths[0].name.startswith("demo@api.levret.io-")
    same = LockKey("HTTPS://API.Levret.io/api/v1/", "demo")
    assert same.digest == LockKey(BASE_URL, "demo").digest
    others = [LockKey(BASE_URL, "alice"), LockKey("https://testnet.levret.io/api/v1", "demo")]
    assert len({key.digest for key in [same, *others]}) == 3
    with file_lock("alice"), file_lock("bob"), file_lock(base_url="http://127.0.0.1:9/api/v1"):
        pass
    assert LockKey(BASE_URL, "../evil user").file_stem.startswith(".._evil_user@")


def test_the_state_directory_is_the_users_unless_the_environment_says() -> None:
    default = Path(platformdirs.user_state_dir("reconciler", appauthor=False)) / "locks"
    assert lock_directory({}) == default
    assert lock_directory({ENV_STATE_DIR: "/srv/state"}) == Path("/srv/state/locks")


def test_lock_held_by_another_process_is_freed_when_it_is_killed() -> None:
    with holding() as holder:
        with pytest.raises(LockHeld) as held:
            file_lock().acquire_blocking()
        assert f"pid {holder.pid} on " in str(held.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with file_lock():  # the kernel released the dead holder's lock; its sidecar is stale
            pass


def test_a_timeout_waits_until_the_holder_lets_go() -> None:
    waiting = threading.Event()
    notes: list[str] = []

    def on_wait(text: str) -> None:
        notes.append(text)
        waiting.set()

    waiter = file_lock(on_wait=on_wait)
    waiter.timeout_s = 60
    errors: list[BaseException] = []

    def take() -> None:
        try:
            waiter.acquire_blocking()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    with holding() as holder:
        thread = threading.Thread(target=take)
        thread.start()
        assert waiting.wait(timeout=30)
        assert f"held by pid {holder.pid}" in notes[0] and "Waiting up to 60 s" in notes[0]
        assert not waiter.is_locked
    thread.join(timeout=30)
    assert errors == [] and waiter.is_locked
    waiter.release()


def test_a_timeout_that_passes_fails_saying_how_long_it_waited() -> None:
    with holding():
        lock = account_lock(None, base_url=BASE_URL, user_id="demo")
        lock.timeout_s = 0.3
        with pytest.raises(LockHeld, match=r"waited 0 s"):
            lock.acquire_blocking()


@pytest.mark.anyio
async def test_async_acquire_is_reentrant_and_a_dead_holders_sidecar_does_not_block() -> None:
    lock = file_lock()
    backend = lock.backend
    assert isinstance(backend, FileBackend)
    backend.path.parent.mkdir(parents=True, exist_ok=True)
    backend.sidecar.write_text(json.dumps({"pid": 999999, "started_at_ms": 0}))
    with lock:
        async with lock:  # the command holds it; run_apply's own `async with` is a no-op
            assert json.loads(backend.sidecar.read_text())["pid"] == os.getpid()
        assert lock.is_locked and backend.sidecar.exists()
    assert not lock.is_locked and not backend.sidecar.exists()


@pytest.mark.anyio
async def test_async_acquire_of_the_file_lock_tries_on_the_loop_and_still_excludes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A try is a non-blocking `flock`: no worker thread is started for it, and a second
    holder is still refused."""

    def no_thread(*args: object, **kwargs: object) -> object:
        raise AssertionError("the file lock's try went to a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    first, second = file_lock(), file_lock()
    second.timeout_s = 0
    async with first:
        assert first.is_locked
        with pytest.raises(LockHeld):
            await second.acquire()
    assert not first.is_locked
