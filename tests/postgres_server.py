"""A real PostgreSQL server for the lock tests: `initdb` and `pg_ctl` into a temporary directory.

It listens only on a unix socket in that directory (no TCP port to collide with), trusts
local connections, and runs as the `postgres` user (via `runuser`) when the tests run as
root, since the server refuses to run as root. In CI (`CI=true`) missing binaries fail the
run loudly (`.ci/run` installs them); elsewhere the tests that need the server skip, saying
why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

PORT = 5432  # names the socket file only: nothing listens on TCP


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


class PostgresServer:
    """A started server; `dsn` reaches its `postgres` database as the `postgres` role."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket_dir = root / "socket"
        self.dsn = f"host={self.socket_dir} port={PORT} dbname=postgres user=postgres"

    def advisory_locks(self) -> int:
        """How many advisory locks are held on the server now."""
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchone()
        assert row is not None
        return int(row[0])

    def until_no_advisory_locks(self, timeout_s: float = 10) -> None:
        """Poll (bounded) until the server holds no advisory lock: it ends a dead session's
        locks as soon as it notices the closed connection, a moment after the kill."""
        deadline = time.monotonic() + timeout_s
        while self.advisory_locks():
            assert time.monotonic() < deadline, "the server still holds an advisory lock"
            time.sleep(0.02)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (.ci/run should have)", pytrace=False)
        pytest.skip(reason)
    # Not under pytest's own temporary root: that is private to root, the server is not.
    root = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    server = PostgresServer(root)
    data = root / "data"
    server.socket_dir.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (root, server.socket_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    options = f"-k {server.socket_dir} -c listen_addresses='' -p {PORT} -c fsync=off"

    def run(*command: str) -> None:
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
        try:
            yield server
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
