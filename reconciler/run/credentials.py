"""Reading API credentials from a file, refusing one that others can read.

An API secret in a file is only as private as the file: a group- or world-readable file
(mode `0640`, `0644`) hands the key to every account on the machine, so it is refused before
its contents are even read, the way `ssh` refuses a private key. The file holds
`KEY=value` lines (the `LEVRET_*` names of the environment), `#` comments and blank lines.

`LEVRET_CREDENTIALS_FILE` names such a file; every documented variable may be in it (the
`LEVRET_*` ones, `RECONCILER_LOCK_DSN`, `RECONCILER_STATE_DIR`), read under the environment
with the same rules (a variable set in the environment wins over the file; plain `http://`
in `LEVRET_BASE_URL` is refused unless loopback, as from the environment).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import ReconcilerError

__all__ = [
    "ENV_CREDENTIALS_FILE",
    "CredentialsFileError",
    "load_credentials_file",
    "with_credentials_file",
]

ENV_CREDENTIALS_FILE = "LEVRET_CREDENTIALS_FILE"
_ALLOWED = frozenset(
    {
        "LEVRET_API_KEY_ID",
        "LEVRET_API_KEY_SECRET",
        "LEVRET_USER_ID",
        "LEVRET_BASE_URL",
        "RECONCILER_LOCK_DSN",
        "RECONCILER_STATE_DIR",
    }
)
_MAX_BYTES = 64 * 1024


class CredentialsFileError(ReconcilerError):
    """The credentials file is missing, readable by others, or malformed (exit 1)."""


def load_credentials_file(path: str | Path) -> dict[str, str]:
    """The `LEVRET_*` values in `path`; refuses a file group or others may read or write.

    Messages name the file and the line, never a value: a malformed line may be the secret.
    """
    file = Path(path)
    try:
        descriptor = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise CredentialsFileError(f"{file}: cannot open: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())  # the file opened, not a name that may be swapped
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsFileError(f"{file}: not a regular file")
        loose = info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        if loose:
            raise CredentialsFileError(
                f"{file}: permissions {stat.S_IMODE(info.st_mode):04o} let others read it; "
                f"run: chmod 600 {file}"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise CredentialsFileError(f"{file}: owned by another user")
        raw = handle.read(_MAX_BYTES + 1)
    if len(raw) > _MAX_BYTES:
        raise CredentialsFileError(f"{file}: larger than {_MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialsFileError(f"{file}: not UTF-8") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or name not in _ALLOWED:
            raise CredentialsFileError(
                f"{file}:{number}: expected KEY=value with KEY one of {', '.join(sorted(_ALLOWED))}"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def with_credentials_file(env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment, with `LEVRET_CREDENTIALS_FILE`'s values under it (the env wins).

    The file is refused if anyone but its owner can read it, before a byte of it is used.
    """
    path = env.get(ENV_CREDENTIALS_FILE)
    if not path:
        return env
    return {**load_credentials_file(path), **env}
