"""The default lock: an OS file lock in the user's state directory, for one host.

The file lives outside the working directory (`platformdirs`' user state directory, or
`$RECONCILER_STATE_DIR`), named after the account (`LockKey.file_stem`), so two checkouts
of the same repository on one host exclude each other. It is a `filelock` (`flock`), so the
kernel releases it when its holder dies. Beside it a JSON sidecar names the holder; it is
written after the lock is taken and removed before it is released, and a stale one (from a
killed holder) is simply overwritten by the next holder.

It protects one host and one OS user's state directory: runners on other machines (or in
containers with their own file systems) need the PostgreSQL backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs
from filelock import FileLock, Timeout

from reconciler.run.lock.core import Holder, LockKey

__all__ = ["ENV_STATE_DIR", "FileBackend", "lock_directory"]

ENV_STATE_DIR = "RECONCILER_STATE_DIR"


def lock_directory(environ: dict[str, str] | None = None) -> Path:
    """`$RECONCILER_STATE_DIR/locks`, else the user's state directory's `locks`."""
    env = os.environ if environ is None else environ
    base = env.get(ENV_STATE_DIR) or platformdirs.user_state_dir("reconciler", appauthor=False)
    return Path(base) / "locks"


class FileBackend:
    """`<directory>/<user>@<host>-<digest>.lock` and its `.json` sidecar."""

    # A try is a non-blocking `flock` and a small file written: quick enough for the loop.
    tries_on_loop = True

    def __init__(self, key: LockKey, directory: Path) -> None:
        self.path = directory / f"{key.file_stem}.lock"
        self.sidecar = self.path.with_name(self.path.name + ".json")
        self.where = f"lock file {self.path}"
        # Not thread-local: it may be taken in one thread and released in another.
        self._lock = FileLock(self.path, timeout=0, thread_local=False)

    def try_acquire(self, me: Holder) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        try:
            temporary = self.sidecar.with_name(f"{self.sidecar.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(me.to_json()), encoding="utf-8")
            os.replace(temporary, self.sidecar)
        except BaseException:
            self._lock.release()
            raise
        return True

    def holder(self) -> Holder | None:
        try:
            return Holder.from_json(self.sidecar.read_text(encoding="utf-8"))
        except OSError:
            return None

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        try:
            self.sidecar.unlink(missing_ok=True)
        finally:
            self._lock.release()
