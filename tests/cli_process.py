"""`reconciler` as a real process, the way CI and operators run it.

For the tests where a process boundary matters: a kill, two concurrent applies, a secret
that must not reach any output. `sandbox_env` points a process at a sandbox with the demo
trading key; every process still inherits the session's temporary `RECONCILER_STATE_DIR`
unless the test gives its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["cli_command", "finish", "run_cli", "sandbox_env", "start_cli"]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from reconciler.cli.root import main; main()", *args]


def sandbox_env(sandbox: Any, **extra: str) -> dict[str, str]:
    """The environment with the demo key and the sandbox's URL (and `extra`)."""
    env = dict(os.environ)
    env.update(
        LEVRET_API_KEY_ID="demo-key",
        LEVRET_API_KEY_SECRET="demo-secret",
        LEVRET_BASE_URL=sandbox.api_url,
        LEVRET_USER_ID="demo",
    )
    env.update(extra)
    return env


def run_cli(cwd: Path, env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run to the end; the exit code and stdout + stderr."""
    done = subprocess.run(
        cli_command(*args), cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def start_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start it with text pipes; the caller waits for it and closes them (`finish`)."""
    return subprocess.Popen(
        cli_command(*args), cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for a started process; its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err
