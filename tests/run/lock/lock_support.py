"""A lock holder in another process, for the lock tests of both backends.

`holding(...)` starts a Python process that takes the account lock (the backend is chosen
as in production: `RECONCILER_LOCK_DSN` in its environment means PostgreSQL), prints
`locked`, and holds the lock until its stdin closes, or until it is killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

HOLDER = """
import sys
from reconciler.run.lock import account_lock
with account_lock(None, base_url=sys.argv[1], user_id=sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""

BASE_URL = "https://api.levret.io/api/v1"


@contextmanager
def holding(
    user_id: str = "demo", *, base_url: str = BASE_URL, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **(env or {}))
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, base_url, user_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
