"""SIGTERM and SIGHUP during a real `reconciler apply` process stop it like Ctrl-C.

The sandbox's `hold` fault pauses the first order after it executed, so the signal provably
arrives while a call is in flight; the process says it received it before the hold is
released, so no sleep decides the order of events.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cli_process import finish, sandbox_env, start_cli

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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_mid_apply_finishes_the_call_in_flight_and_sends_no_other(
    sandbox: RunningSandbox, tmp_path: Path, stop: signal.Signals
) -> None:
    state = tmp_path / "state"
    (tmp_path / "desired.yaml").write_text(DESIRED)
    env = sandbox_env(sandbox, RECONCILER_STATE_DIR=str(state))
    sandbox.clear_requests()
    sandbox.set_faults({"hold": {"when": "after", "path": "/order", "count": 1}})
    process = start_cli(tmp_path, env, "apply", "-f", "desired.yaml", "--auto-approve")
    try:
        held = sandbox.control("POST", "held", {"timeout": 60})
        assert held == [{"path": "/order", "when": "after"}], process.poll()
        process.send_signal(stop)
        assert process.stderr is not None
        for line in process.stderr:  # bounded by the suite's timeout, not by a sleep
            if line.startswith(f"{stop.name} received"):
                break
        else:
            raise AssertionError("the process never acknowledged the signal")
    finally:
        sandbox.control("POST", "release")
        sandbox.set_faults({})
        code, _out, err = finish(process)
    assert code == 5, err
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error: apply interrupted after 1 pass"), err
    assert "1 accepted" in last

    sent = [(entry["method"], entry["path"]) for entry in writes(sandbox)]
    assert sent == [("POST", "/api/v1/order")]  # the call in flight, and no other
    (journal,) = (tmp_path / ".reconciler" / "journal").glob("*.jsonl")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    types = [record["type"] for record in records]
    assert types[-2:] == ["interrupted", "end"], types
    assert types.count("intent") == 1
    outcomes = [record["outcome"] for record in records if record["type"] == "result"]
    assert outcomes == ["accepted", "not_sent"], outcomes
    assert not list((state / "locks").glob("*.json")), "the lock's sidecar was left behind"
