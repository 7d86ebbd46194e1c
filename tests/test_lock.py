"""The account lock: a second apply fails at once, naming who holds the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.errors import LockHeld
from reconciler.lock import AccountLock, lock_path

# A holder in another process: takes the lock, says so, holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from reconciler.lock import AccountLock
with AccountLock(sys.argv[1], Path(sys.argv[2])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_holder_fails_at_once_naming_pid_and_start(tmp_path: Path) -> None:
    with AccountLock("demo", tmp_path) as first:
        assert first.is_locked
        sidecar = json.loads(first.sidecar.read_text())
        assert sidecar["pid"] == os.getpid()
        started = time.monotonic()
        with pytest.raises(LockHeld) as held:
            AccountLock("demo", tmp_path).acquire()
        assert time.monotonic() - started < 1.0
    message = str(held.value)
    assert held.value.exit_code == 6
    assert f"pid {os.getpid()}" in message
    assert sidecar["started_at"] in message
    assert not first.sidecar.exists()
    with AccountLock("demo", tmp_path):  # free again once released
        pass


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "demo", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as held:
            AccountLock("demo", tmp_path).acquire()
        assert f"pid {holder.pid}" in str(held.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    with AccountLock("demo", tmp_path):
        pass


def test_a_dead_holders_sidecar_does_not_block(tmp_path: Path) -> None:
    lock = AccountLock("demo", tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.sidecar.write_text(json.dumps({"pid": 999999, "started_at_ms": 0}))
    with lock:
        assert json.loads(lock.sidecar.read_text())["pid"] == os.getpid()


def test_accounts_lock_independently_and_names_are_safe(tmp_path: Path) -> None:
    with AccountLock("alice", tmp_path), AccountLock("bob", tmp_path):
        pass
    assert lock_path("../evil user", tmp_path).parent == tmp_path / "locks"
