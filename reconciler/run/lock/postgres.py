"""The shared lock: a PostgreSQL session-level advisory lock, for every runner on one server.

`pg_try_advisory_lock(key)` on a 64-bit key derived from the account (`LockKey.advisory_key`),
taken on a connection of its own that stays open for the whole apply. The lock belongs to
that session: when the holder exits, is killed or loses its connection, the server ends the
session and the lock with it. TCP keepalives bound how long a vanished runner can keep it.

The holder names itself in the connection's `application_name` (host, pid, start time, CI
run id; at most 63 bytes, so a long host name is cut), which any role can read back from
`pg_stat_activity` joined with `pg_locks`: that is how a second apply names the holder.

The DSN is a secret (it may hold a password): it is never printed, logged or written. A
connection error is reported with the DSN and its password masked; a DSN that does not
parse is reported without any of its text.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from reconciler.errors import LockUnavailable
from reconciler.run.lock.core import Holder, LockKey

__all__ = ["PostgresBackend", "application_name", "parse_application_name"]

_PREFIX = "reconciler"
_NAME = re.compile(r"^reconciler pid=(\d+) t=(\d+) ci=(\S*) host=(\S*)$")
_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1
_CONNECT: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_HOLDER_SQL = """
SELECT a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(high)s::bigint::oid AND l.objid = %(low)s::bigint::oid
"""


def application_name(me: Holder) -> str:
    """`reconciler pid=… t=… ci=… host=…`, cut to 63 bytes (the host comes last)."""
    ci = re.sub(r"\s+", "_", me.ci_run or "")
    host = re.sub(r"[^\x21-\x7e]+", "_", me.host or "")
    started = (me.started_at_ms or 0) // 1000
    text = f"{_PREFIX} pid={me.pid or 0} t={started} ci={ci} host={host}"
    return text.encode("ascii", "replace")[:_MAX_NAME_BYTES].decode("ascii")


def parse_application_name(text: str) -> Holder:
    match = _NAME.match(text)
    if match is None:
        return Holder()
    pid, started, ci, host = match.groups()
    return Holder(int(pid), host or None, int(started) * 1000, ci or None)


class PostgresBackend:
    """The advisory lock of one account on the server `dsn` names.

    `source` says where the DSN came from (`$RECONCILER_LOCK_DSN`, `--lock-dsn`): messages
    name it instead of the DSN.
    """

    # A try is a round trip to the server: it goes to a worker thread.
    tries_on_loop = False

    def __init__(self, key: LockKey, dsn: SecretStr, *, source: str) -> None:
        self._key = key.advisory_key
        self._dsn = dsn
        self._source = source
        self._connection: psycopg.Connection[Any] | None = None
        self._held = False
        self.where = f"PostgreSQL advisory lock {self._key} on the server of {source}"

    def try_acquire(self, me: Holder) -> bool:
        connection = self._connect(me)
        row = self._run(connection, "SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        self._held = bool(row and row[0])
        return self._held

    def holder(self) -> Holder | None:
        if self._connection is None:
            return None
        unsigned = self._key & 0xFFFF_FFFF_FFFF_FFFF
        params = {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}
        rows = self._run(self._connection, _HOLDER_SQL, params).fetchall()
        if not rows:
            return None
        return parse_application_name(str(rows[0][0] or ""))

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self._held:
                connection.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        except psycopg.Error:
            pass  # closing the session below releases it all the same
        finally:
            self._held = False
            connection.close()

    def _connect(self, me: Holder) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        dsn = self._dsn.get_secret_value()
        try:
            conninfo_to_dict(dsn)
        except psycopg.Error:
            raise LockUnavailable(
                f"{self._source} is not a valid PostgreSQL connection string"
            ) from None
        try:
            self._connection = psycopg.connect(
                dsn, autocommit=True, application_name=application_name(me), **_CONNECT
            )
        except psycopg.Error as error:
            raise self._unavailable(error) from None
        return self._connection

    def _run(self, connection: psycopg.Connection[Any], sql: str, params: Any) -> Any:
        try:
            return connection.execute(sql, params)
        except psycopg.Error as error:
            raise self._unavailable(error) from None

    def _unavailable(self, error: psycopg.Error) -> LockUnavailable:
        return LockUnavailable(
            f"cannot use the lock server of {self._source}: {self._masked(str(error))}"
        )

    def _masked(self, text: str) -> str:
        dsn = self._dsn.get_secret_value()
        secrets = [dsn]
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.Error:
            password = None
        if password:
            secrets.append(str(password))
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text.strip()
