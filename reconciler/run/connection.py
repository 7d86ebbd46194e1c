"""Where the commands send their calls: the real exchange, a given URL, or the embedded sandbox.

Credentials and the base URL come from environment variables (named by the desired-state
file's `account.credentials_env`, or the `LEVRET_*` defaults) or `LEVRET_CREDENTIALS_FILE`
under them, never from the desired-state file itself, so that file can be committed and
reviewed. With `--sandbox` the embedded sandbox is
started in-process on an ephemeral loopback port over `.reconciler/sandbox.db` and the demo
key is used.

This module is on the path of every command's `--help`, so it imports the settings model
(pydantic) and the sandbox server only inside the functions that use them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.run.credentials import with_credentials_file

if TYPE_CHECKING:
    from reconciler.levret.settings import ClientSettings
    from reconciler.model.desired import DesiredState

__all__ = [
    "DEMO_KEY_ID",
    "DEMO_SECRET",
    "DEMO_USER_ID",
    "STATE_DIR",
    "Endpoint",
    "EndpointError",
    "client_settings",
    "endpoint",
    "lock_scope",
    "public_settings",
]

STATE_DIR = Path(".reconciler")
SANDBOX_DB = STATE_DIR / "sandbox.db"
SANDBOX_PROFILE_META = "reconciler.sandbox_profile"
RATE_RESERVE_META = "reconciler.rate_reserve"
"""Where `--sandbox-profile` leaves its value in the click context's `meta`."""
DEMO_USER_ID = "demo"
DEMO_KEY_ID = "demo-key"
DEMO_SECRET = "demo-secret"  # the sandbox's published demo key, not a real credential


class EndpointError(ReconcilerError):
    """Credentials or the base URL are missing or unusable."""


@dataclass(frozen=True)
class Endpoint:
    """The base URL to talk to, and whether it is the embedded sandbox (demo credentials)."""

    base_url: str
    sandbox: bool = False


def _chosen_profile() -> str:
    """The `--sandbox-profile` of the running command, else the default (`ideal`)."""
    import click

    from reconciler.sandbox.profiles import DEFAULT_PROFILE

    context = click.get_current_context(silent=True)
    chosen = None if context is None else context.find_root().meta.get(SANDBOX_PROFILE_META)
    return str(chosen) if chosen is not None else DEFAULT_PROFILE


@contextmanager
def endpoint(
    *, sandbox: bool, base_url: str | None, profile: str | None = None
) -> Iterator[Endpoint]:
    """Yield where to connect; with `sandbox`, a started embedded sandbox for the duration.

    `profile` is the embedded sandbox's (`--sandbox-profile`, read from the click context when
    not given).
    """
    if sandbox:
        from reconciler.sandbox.server import SandboxServer

        STATE_DIR.mkdir(exist_ok=True)
        chosen = profile if profile is not None else _chosen_profile()
        with SandboxServer(db_path=SANDBOX_DB, profile=chosen) as server:
            yield Endpoint(server.api_url, sandbox=True)
        return
    from reconciler.levret.settings import DEFAULT_BASE_URL, ENV_BASE_URL

    env = with_credentials_file(os.environ)
    yield Endpoint(base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL)


def lock_scope(where: Endpoint) -> str | None:
    """What the account lock is keyed on instead of the base URL: the embedded sandbox's
    database (its port changes every run), else nothing (the base URL itself)."""
    return f"sandbox:{SANDBOX_DB.resolve()}" if where.sandbox else None


def client_settings(
    where: Endpoint,
    desired: DesiredState | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    rate_limit_per_minute: int | None = None,
) -> ClientSettings:
    """Settings for `where`: the demo key for the sandbox, else the environment's credentials."""
    from pydantic import SecretStr, ValidationError

    from reconciler.levret.settings import (
        ENV_API_KEY_ID,
        ENV_API_KEY_SECRET,
        ENV_USER_ID,
        ClientSettings,
    )

    env = with_credentials_file(os.environ if environ is None else environ)
    file_user = desired.account.user_id if desired is not None else None
    if where.sandbox:
        key_id, secret = DEMO_KEY_ID, DEMO_SECRET
        user_id = file_user or env.get(ENV_USER_ID) or DEMO_USER_ID
    else:
        names = desired.account.credentials_env if desired is not None else None
        key_env = names.key_id if names is not None else ENV_API_KEY_ID
        secret_env = names.secret if names is not None else ENV_API_KEY_SECRET
        key_id, secret = env.get(key_env, ""), env.get(secret_env, "")
        missing = [name for name, value in ((key_env, key_id), (secret_env, secret)) if not value]
        if missing:
            raise EndpointError(
                f"missing credentials: set {' and '.join(missing)} (or use --sandbox)"
            )
        user_id = file_user or env.get(ENV_USER_ID, "")
        if not user_id:
            raise EndpointError(
                f"no user id: set account.user_id in the desired-state file or {ENV_USER_ID}"
            )
    extra: dict[str, Any] = {"rate_reserve": _rate_reserve(desired)}
    if rate_limit_per_minute is not None:
        extra["rate_limit_per_minute"] = rate_limit_per_minute
    try:
        return ClientSettings(
            api_key_id=key_id,
            api_key_secret=SecretStr(secret),
            user_id=user_id,
            base_url=where.base_url,
            **extra,
        )
    except (ValidationError, ValueError) as error:
        raise EndpointError(_settings_problem(error)) from None


def _rate_reserve(desired: DesiredState | None) -> float:
    """`--rate-reserve`, else the file's `rate_limit.reserve`, else 10 %: as a fraction."""
    import click

    from reconciler.levret.ratelimit import DEFAULT_RESERVE

    context = click.get_current_context(silent=True)
    chosen = None if context is None else context.find_root().meta.get(RATE_RESERVE_META)
    if chosen is None and desired is not None and desired.rate_limit.reserve is not None:
        chosen = float(desired.rate_limit.reserve)
    return DEFAULT_RESERVE if chosen is None else float(chosen) / 100


def _settings_problem(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(str(item["msg"]) for item in error.errors(include_input=False))
    return str(error)


def public_settings(where: Endpoint) -> ClientSettings:
    """Settings for public market-data calls only (no credentials are needed or sent).

    A short timeout and a single attempt: callers use this for optional checks, such as
    `validate` looking up symbol specs, that must not hang when the exchange is unreachable.
    """
    from pydantic import SecretStr

    from reconciler.levret.settings import ClientSettings

    return ClientSettings(
        api_key_id="anonymous",
        api_key_secret=SecretStr(""),
        user_id="anonymous",
        base_url=where.base_url,
        send_secret_header=False,
        connect_timeout=3.0,
        read_timeout=5.0,
        max_attempts=1,
    )
