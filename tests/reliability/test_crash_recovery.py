"""Kill a real `reconciler apply` process mid-call, then run apply again: nothing doubles.

The sandbox's `hold` fault parks the order either before it executes (the journal already
holds its intent: "killed after the journal write") or after it executed (the answer never
reaches the process: "killed after sending, before the answer"). The test waits on the
sandbox (`POST /_sandbox/held`) and on the journal's contents, never on a sleep, then kills
the process with SIGKILL, releases the request and applies again.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from cli_process import finish, sandbox_env, start_cli
from conftest import SandboxFactory
from reliability_support import last_id, orders_since, position

from reconciler.apply.journal import read_journal
from reconciler.cli.root import run

DESIRED = """\
version: 1
account: {user_id: demo}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10}
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_apply_killed_mid_call_then_rerun_converges_once(
    sandbox_factory: SandboxFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    sandbox = sandbox_factory(rate_limit=1_000_000)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    mark = last_id(sandbox, "orders")
    sandbox.set_faults({"hold": {"when": when, "path": "/order", "count": 1}})
    process = start_cli(tmp_path, sandbox_env(sandbox), "apply", "-f", "desired.yaml",
                        "--auto-approve")  # fmt: skip
    try:
        held = sandbox.control("POST", "held", {"timeout": 60})
        assert held == [{"path": "/order", "when": when}], process.poll()
        (journal_file,) = (tmp_path / ".reconciler" / "journal").iterdir()
        records = read_journal(journal_file)
        assert [r["type"] for r in records][-1] == "intent"  # written before the send
        assert records[-1]["request"]["path"] == "/order"
        process.kill()
    finally:
        finish(process)
    sandbox.control("POST", "release")
    sandbox.set_faults({})
    executed = orders_since(sandbox, "demo", mark)
    assert len(executed) == (0 if when == "before" else 1)

    # The kernel released the dead process's lock; the journal ends at the intent.
    for name, value in sandbox_env(sandbox).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert run(["apply", "-f", "desired.yaml", "--auto-approve"]) == 0
    assert position(sandbox, "demo", "BTC_USDT") == Decimal("0.5")
    assert len(orders_since(sandbox, "demo", mark)) == 1  # exactly one order in all
