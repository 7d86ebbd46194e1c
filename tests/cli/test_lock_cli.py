"""Two real `reconciler apply` processes on one sandbox account, from two directories.

The first apply (A) is paused mid-apply by the sandbox's `hold` fault (its market order has
executed; the answer waits for `POST /_sandbox/release`), so it provably holds the lock
while the others run: no sleep decides who goes first. Then:

- B, without `--lock-timeout`, exits 6 at once naming A's pid, and sends nothing;
- C, with `--lock-timeout`, says it is waiting for A; once A is released and done, C takes
  the lock, plans from what A left, finds nothing to do and exits 0;
- or A is killed with SIGKILL while it holds the lock: the kernel (file) or the server
  (PostgreSQL) frees it, and a new apply proceeds and converges.

The proof that exactly one of them traded is the sandbox's request log: its writes are
exactly the calls of the minimal plan made before any of them ran, each once.

Each case runs with the machine-wide file lock and with the PostgreSQL lock shared through
a real server, each process choosing it another way (`$RECONCILER_LOCK_DSN`, `--lock-dsn`,
the file's `lock: {backend: postgres, dsn_env: ...}`).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_process import finish, run_cli, sandbox_env, start_cli
from postgres_server import PostgresServer
from wire import wire_call

from reconciler.model.desired import loads
from reconciler.run.connection import Endpoint, client_settings
from reconciler.run.workflow import plan_account
from tests.cli.cli_support import writes
from tests.conftest import RunningSandbox

DESIRED = """\
version: 1
account: {user_id: demo}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10}
  ETH_USDT:
    orders: [{side: sell, price: 3000, size: 1}]
"""
SHARED_LOCK = "lock: {backend: postgres, dsn_env: TEAM_LOCK_DSN}\n"
APPLY = ("apply", "-f", "desired.yaml", "--auto-approve")


@dataclass
class Setup:
    """Three working directories on one account, and how each process picks the lock."""

    sandbox: RunningSandbox
    root: Path
    env: dict[str, str]
    flags: dict[str, tuple[str, ...]]

    def directory(self, name: str, desired: str = DESIRED) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        (path / "desired.yaml").write_text(desired)
        return path

    def start(self, name: str, *extra: str) -> subprocess.Popen[str]:
        return start_cli(self.directory(name), self.env, *APPLY, *self.flags.get(name, ()), *extra)

    def run(self, name: str, *extra: str) -> tuple[int, str]:
        return run_cli(self.directory(name), self.env, *APPLY, *self.flags.get(name, ()), *extra)

    def minimal_writes(self) -> Counter[tuple[str, str]]:
        """The calls of the plan made before any apply ran (in-process: no start-up cost)."""
        where = Endpoint(self.sandbox.api_url)
        desired = loads(DESIRED)
        plan = asyncio.run(plan_account(client_settings(where, desired, environ=self.env), desired))
        requests = [wire_call(action) for action in plan.actions]
        assert [r.path for r in requests] == ["/order", "/order"]  # the market order, the limit
        return Counter((r.method, "/api/v1" + r.path) for r in requests)

    def writes(self) -> Counter[tuple[str, str]]:
        return Counter((entry["method"], entry["path"]) for entry in writes(self.sandbox))

    def hold_first_order(self) -> None:
        self.sandbox.clear_requests()
        self.sandbox.set_faults({"hold": {"when": "after", "path": "/order", "count": 1}})

    def wait_until_held(self, holder: subprocess.Popen[str]) -> None:
        held = self.sandbox.control("POST", "held", {"timeout": 60})
        assert held == [{"path": "/order", "when": "after"}], holder.poll()


def file_setup(sandbox: RunningSandbox, tmp_path: Path) -> Setup:
    env = sandbox_env(sandbox, RECONCILER_STATE_DIR=str(tmp_path / "state"))
    return Setup(sandbox, tmp_path, env, {})


def postgres_setup(sandbox: RunningSandbox, tmp_path: Path, server: PostgresServer) -> Setup:
    # A uses $RECONCILER_LOCK_DSN, B --lock-dsn, C and D their file's `lock` section.
    env = sandbox_env(sandbox, RECONCILER_LOCK_DSN=server.dsn, TEAM_LOCK_DSN=server.dsn)
    setup = Setup(sandbox, tmp_path, env, {"b": ("--lock-dsn", server.dsn)})
    setup.directory("c", SHARED_LOCK + DESIRED)
    setup.directory("d", SHARED_LOCK + DESIRED)
    return setup


Backend = Callable[[RunningSandbox, Path], Setup]


@pytest.fixture(params=["file", "postgres"])
def setup(request: pytest.FixtureRequest, sandbox: RunningSandbox, tmp_path: Path) -> Setup:
    if request.param == "file":
        return file_setup(sandbox, tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres")
    return postgres_setup(sandbox, tmp_path, server)


def test_one_apply_trades_the_second_exits_6_and_a_waiting_one_finds_nothing_to_do(
    setup: Setup,
) -> None:
    minimal = setup.minimal_writes()
    setup.hold_first_order()
    first = setup.start("a")
    waiting: subprocess.Popen[str] | None = None
    try:
        setup.wait_until_held(first)
        code, text = setup.run("b")
        assert code == 6, text
        assert f"another apply holds the lock for account 'demo' at {setup.sandbox.api_url}" in text
        assert f"pid {first.pid} on " in text
        if "b" in setup.flags:
            assert "on the server of --lock-dsn" in text

        waiting = setup.start("c", "--lock-timeout", "2m")
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # bounded by the suite's timeout, not by a sleep
        assert line.startswith("Waiting up to 120 s for the lock of account 'demo'"), line
        assert f"held by pid {first.pid} on " in line
    finally:
        setup.sandbox.control("POST", "release")
        setup.sandbox.set_faults({})
        code, out, err = finish(first)
    assert code == 0, out + err
    assert waiting is not None
    code, out, err = finish(waiting)
    assert code == 0, out + err
    assert "No changes. The account already matches the file." in err
    assert setup.writes() == minimal  # every minimal call once: only A traded


def test_sigkill_of_the_holder_frees_the_lock_and_a_new_apply_proceeds(
    setup: Setup, request: pytest.FixtureRequest
) -> None:
    minimal = setup.minimal_writes()
    setup.hold_first_order()
    holder = setup.start("a")
    try:
        setup.wait_until_held(holder)
        holder.send_signal(signal.SIGKILL)
    finally:
        finish(holder)
        setup.sandbox.control("POST", "release")
        setup.sandbox.set_faults({})
    assert holder.returncode == -signal.SIGKILL
    if "b" in setup.flags:  # PostgreSQL: the server ended the dead session and its lock
        server: PostgresServer = request.getfixturevalue("postgres")
        server.until_no_advisory_locks()
    code, text = setup.run("d")  # no --lock-timeout: the lock must be free right away
    assert code == 0, text
    assert "Apply complete: converged." in text
    assert setup.writes() == minimal  # the killed apply's order executed; d did the rest
