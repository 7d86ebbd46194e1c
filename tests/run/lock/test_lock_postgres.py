"""The shared lock: a PostgreSQL advisory lock on a real server, across processes."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from lock_support import BASE_URL, holding
from postgres_server import PostgresServer
from pydantic import SecretStr

from reconciler.errors import LockHeld, LockUnavailable
from reconciler.model.desired import LockSettings
from reconciler.run.lock import ENV_LOCK_DSN, AccountLock, Holder, LockOptions, account_lock
from reconciler.run.lock.file import FileBackend
from reconciler.run.lock.postgres import PostgresBackend, application_name, parse_application_name

CANARY = "pg-Canary-5e1d9b7a-NEVER-SHOWN"


def pg_lock(server: PostgresServer, user_id: str = "demo", timeout_s: float = 0) -> AccountLock:
    lock = account_lock(
        None, base_url=BASE_URL, user_id=user_id, environ={ENV_LOCK_DSN: server.dsn}
    )
    lock.timeout_s = timeout_s
    assert isinstance(lock.backend, PostgresBackend)
    return lock


def test_a_second_session_is_refused_naming_the_holder(postgres: PostgresServer) -> None:
    with pg_lock(postgres) as first:
        assert postgres.advisory_locks() == 1
        with pytest.raises(LockHeld) as held:
            pg_lock(postgres).acquire_blocking()
        with pg_lock(postgres, "alice"):  # another account is another key
            assert postgres.advisory_locks() == 2
        assert first.is_locked
    message = str(held.value)
    assert held.value.exit_code == 6
    assert f"pid {__import__('os').getpid()} on {socket.gethostname()[:20]}" in message
    assert "PostgreSQL advisory lock" in message and f"${ENV_LOCK_DSN}" in message
    assert postgres.dsn not in message
    assert postgres.advisory_locks() == 0


def test_the_holder_in_another_process_is_named_with_its_ci_run_and_freed_by_sigkill(
    postgres: PostgresServer,
) -> None:
    env = {ENV_LOCK_DSN: postgres.dsn, "GITHUB_RUN_ID": "4242"}
    with holding(env=env) as holder:
        with pytest.raises(LockHeld) as held:
            pg_lock(postgres).acquire_blocking()
        assert f"pid {holder.pid} on " in str(held.value)
        assert "(CI run 4242)" in str(held.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # The server ends the dead session and its lock; waiting covers the moment it takes.
        with pg_lock(postgres, timeout_s=30):
            pass
    assert postgres.advisory_locks() == 0


def test_a_timeout_waits_for_the_holder_and_then_takes_the_lock(
    postgres: PostgresServer,
) -> None:
    with holding(env={ENV_LOCK_DSN: postgres.dsn}) as holder:
        lock = pg_lock(postgres, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(LockHeld, match=r"waited 0 s"):
            lock.acquire_blocking()
        assert time.monotonic() - started >= 0.3
        assert holder.stdin is not None
        holder.stdin.close()  # the holder lets go as soon as it reads end-of-file
        with pg_lock(postgres, timeout_s=30):
            assert postgres.advisory_locks() == 1


def test_the_holder_names_itself_in_63_bytes() -> None:
    me = Holder(123456, "runner-" + "x" * 80, 1_764_630_000_123, "987654321")
    name = application_name(me)
    assert len(name.encode()) <= 63 and name.startswith("reconciler pid=123456 t=1764630000 ")
    back = parse_application_name(name)
    assert (back.pid, back.started_at_ms, back.ci_run) == (123456, 1_764_630_000_000, "987654321")
    assert back.host is not None and back.host.startswith("runner-x")
    assert parse_application_name("psql") == Holder()


def test_the_dsn_and_its_password_never_appear_in_an_error(tmp_path: Path) -> None:
    unreachable = f"host={tmp_path} port=1 dbname=postgres user=postgres password={CANARY}"
    url = f"postgresql://postgres:{CANARY}@127.0.0.1:1/postgres?connect_timeout=2"
    broken = f"host=x password={CANARY} oops"
    for dsn in (unreachable, url, broken):
        lock = account_lock(None, LockOptions(dsn=SecretStr(dsn)), base_url=BASE_URL,
                            user_id="demo", environ={})  # fmt: skip
        with pytest.raises(LockUnavailable) as refused:
            lock.acquire_blocking()
        text = str(refused.value) + repr(refused.value) + lock.backend.where
        assert CANARY not in text and dsn not in text, text
        assert "--lock-dsn" in text and refused.value.exit_code == 1


def test_the_backend_is_chosen_by_flag_then_file_then_environment(tmp_path: Path) -> None:
    def backend(settings: LockSettings | None, options: LockOptions, env: dict[str, str]) -> str:
        lock = account_lock(settings, options, base_url=BASE_URL, user_id="u", environ=env)
        return type(lock.backend).__name__ + " " + lock.backend.where.split(" of ")[-1]

    flag = LockOptions(dsn=SecretStr("host=flag"))
    shared = LockSettings(backend="postgres", dsn_env="TEAM_LOCK_DSN")
    env = {"TEAM_LOCK_DSN": "host=team", ENV_LOCK_DSN: "host=default", "X": str(tmp_path)}
    assert backend(shared, flag, env) == "PostgresBackend --lock-dsn"
    assert backend(shared, LockOptions(), env) == "PostgresBackend $TEAM_LOCK_DSN"
    assert backend(None, LockOptions(), env) == f"PostgresBackend ${ENV_LOCK_DSN}"
    assert backend(None, LockOptions(), {}).startswith(FileBackend.__name__)
    with pytest.raises(LockUnavailable, match=r"\$TEAM_LOCK_DSN is not set"):
        backend(shared, LockOptions(), {ENV_LOCK_DSN: "host=default"})
