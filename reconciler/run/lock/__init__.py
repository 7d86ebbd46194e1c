"""The account lock: which backend, keyed on which account, waiting how long.

`account_lock(settings, options, base_url=, user_id=)` picks the backend:

1. `--lock-dsn` given: PostgreSQL, that server;
2. the desired-state file's `lock: {backend: postgres, dsn_env: NAME}`: PostgreSQL, the
   server in `$NAME` (an error if it is unset: the file asked for a shared lock);
3. `$RECONCILER_LOCK_DSN` set: PostgreSQL, that server;
4. otherwise the machine-wide file lock (`reconciler.run.lock.file`).

See `reconciler.run.lock.core` for the lock itself and the two backend modules for what each
protects. `DEFAULT_STATE_DIR` is the working directory's own state (journals, plans, the
sandbox's database); no lock lives there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from reconciler.defaults import ENV_LOCK_DSN
from reconciler.errors import LockUnavailable
from reconciler.model.desired import LockSettings
from reconciler.run.credentials import with_credentials_file
from reconciler.run.lock.core import AccountLock, Holder, LockBackend, LockKey
from reconciler.run.lock.file import ENV_STATE_DIR, FileBackend, lock_directory

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENV_LOCK_DSN",
    "ENV_STATE_DIR",
    "AccountLock",
    "Holder",
    "LockBackend",
    "LockKey",
    "LockOptions",
    "account_lock",
    "lock_directory",
]

DEFAULT_STATE_DIR = Path(".reconciler")


@dataclass(frozen=True)
class LockOptions:
    """What the command line says about the lock: `--lock-dsn`, `--lock-timeout` (seconds).

    `scope` stands for the base URL in the key when that URL does not name the account: the
    embedded sandbox listens on a new port each run, its account is its database file.
    """

    dsn: SecretStr | None = None
    timeout_s: float = 0.0
    scope: str | None = None


def account_lock(
    settings: LockSettings | None,
    options: LockOptions = LockOptions(),
    *,
    base_url: str,
    user_id: str,
    environ: Mapping[str, str] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> AccountLock:
    """The (not yet taken) lock of the account at `base_url` for `user_id`.

    `RECONCILER_LOCK_DSN` and `RECONCILER_STATE_DIR` may come from `LEVRET_CREDENTIALS_FILE`
    too (the environment wins), like every documented variable.
    """
    env = with_credentials_file(os.environ if environ is None else environ)
    key = LockKey(options.scope or base_url, user_id)
    backend: LockBackend
    dsn, source = _dsn(settings or LockSettings(), options, env)
    if dsn is not None:
        from reconciler.run.lock.postgres import PostgresBackend  # only runs that use it load it

        backend = PostgresBackend(key, dsn, source=source)
    else:
        backend = FileBackend(key, lock_directory(dict(env)))
    return AccountLock(key, backend, timeout_s=options.timeout_s, on_wait=on_wait)


def _dsn(
    settings: LockSettings, options: LockOptions, env: Mapping[str, str]
) -> tuple[SecretStr | None, str]:
    if options.dsn is not None and options.dsn.get_secret_value():
        return options.dsn, "--lock-dsn"
    if settings.backend == "postgres":
        value = env.get(settings.dsn_env, "")
        if not value:
            raise LockUnavailable(
                f"lock.backend is postgres but ${settings.dsn_env} is not set "
                "(or give --lock-dsn); nothing was sent"
            )
        return SecretStr(value), f"${settings.dsn_env}"
    value = env.get(ENV_LOCK_DSN, "")
    if value:
        return SecretStr(value), f"${ENV_LOCK_DSN}"
    return None, ""
