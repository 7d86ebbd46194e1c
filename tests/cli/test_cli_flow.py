"""The commands end to end: a real sandbox over HTTP, the CLI run in-process as a user would.

Each test reads the sandbox's request log to prove what was (and was not) sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.root import run
from reconciler.run.lock import account_lock
from tests.cli.cli_support import Invoke, TerminalInput, make_invoke, point_at, writes

DESIRED = """\
version: 1
account:
  user_id: demo
defaults:
  leverage: 5
policy:
  max_leverage: 20
  allowed_symbols: [BTC_USDT, ETH_USDT, SOL_USDT]
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10, take_profit: 47000, stop_loss: 44000}
    orders:
      - {side: buy, price: 42000, size: 0.1}
      - {side: sell, price: 52000, size: 0.1, reduce_only: true}
  ETH_USDT:
    position: {side: short, notional: 20000}
  SOL_USDT:
    position: {side: flat}
    orders: []
"""


@pytest.fixture
def cli(sandbox, tmp_path, monkeypatch, capsys) -> Invoke:  # type: ignore[no-untyped-def]
    """Run `reconciler ARGS` in a scratch directory with the demo key pointed at `sandbox`."""
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_plan_json_is_alone_on_stdout_and_sends_only_reads(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    result = cli("plan", "-f", "desired.yaml", "--format", "json", "--detailed-exitcode")
    assert result.code == 2, result.err
    plan = json.loads(result.out)
    assert plan["format_version"] == 2
    assert plan["actions"][0]["kind"] == "cancel_all_orders"
    assert writes(sandbox) == []


def test_apply_converges_then_plan_is_empty(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert applied.code == 0, applied.err
    assert "converged" in applied.err
    again = cli("plan", "-f", "desired.yaml", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert "No changes" in again.out
    positions = {p["symbol"]: p for p in sandbox.exchange.positions("demo", None)}
    assert positions["BTC_USDT"]["size"] == pytest.approx(0.5)
    assert positions["ETH_USDT"]["side"] == "short"
    assert "SOL_USDT" not in positions


def test_declined_prompt_exits_7_and_sends_nothing(cli, sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", TerminalInput("no\n"))
    result = cli("apply", "-f", "desired.yaml")
    assert result.code == 7
    assert writes(sandbox) == []


def test_saved_plan_applies_when_fresh(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    assert cli("plan", "-f", "desired.yaml", "--out", "plan.json").code == 0
    sandbox.clear_requests()
    applied = cli("apply", "plan.json", "-f", "desired.yaml")
    assert applied.code == 0, applied.err
    assert cli("plan", "-f", "desired.yaml", "--detailed-exitcode").code == 0


def test_stale_saved_plan_is_refused_with_exit_3_and_no_writes(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    assert cli("plan", "-f", "desired.yaml", "--out", "plan.json").code == 0
    # Someone changes BTC behind the plan's back.
    sandbox.exchange.place_order(
        "demo",
        {
            "userId": "demo",
            "symbol": "BTC_USDT",
            "side": "buy",
            "orderType": "limit",
            "size": __import__("decimal").Decimal("0.01"),
            "price": 40000,
        },
    )
    sandbox.clear_requests()
    result = cli("apply", "plan.json", "-f", "desired.yaml")
    assert result.code == 3, result.err
    assert "BTC_USDT" in result.err
    assert writes(sandbox) == []


def test_policy_violation_exits_4_and_sends_nothing(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = DESIRED.replace("max_leverage: 20", "max_leverage: 20\n  max_gross_notional: 1000")
    (tmp_path / "desired.yaml").write_text(text)
    result = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert result.code == 4
    assert "gross" in result.err.lower()
    assert writes(sandbox) == []


def test_bad_file_exits_1_naming_line_and_field_with_no_request(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.yaml").write_text(DESIRED.replace("size: 0.5", "size: -0.5"))
    sandbox.clear_requests()
    result = cli("apply", "-f", "bad.yaml", "--auto-approve")
    assert result.code == 1
    assert "bad.yaml:11:" in result.err
    assert "symbols.BTC_USDT.position.size" in result.err
    assert sandbox.requests() == []


def test_import_writes_a_file_that_plans_empty(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    result = cli("import", "--user-id", "demo", "-o", "imported.yaml")
    assert result.code == 0, result.err
    sandbox.clear_requests()
    planned = cli("plan", "-f", "imported.yaml", "--detailed-exitcode")
    assert planned.code == 0, planned.out
    assert writes(sandbox) == []


def test_second_apply_fails_at_once_while_the_lock_is_held(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    with account_lock(None, base_url=sandbox.api_url, user_id="demo"):
        result = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert result.code == 6
    assert "pid" in result.err


def test_plain_http_to_a_remote_host_is_refused_before_sending(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.clear_requests()
    result = cli("plan", "-f", "desired.yaml", "--base-url", "http://example.com/api/v1")
    assert result.code == 1
    assert "http://" in result.err
    assert sandbox.requests() == []


def test_show_renders_a_saved_plan(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("plan", "-f", "desired.yaml", "--out", "plan.json").code == 0
    shown = cli("show", "plan.json", "--format", "markdown")
    assert shown.code == 0
    assert "BTC_USDT" in shown.out


def test_validate_and_schema(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli("validate", "desired.yaml").code == 0
    (tmp_path / "offstep.yaml").write_text(DESIRED.replace("size: 0.5", "size: 0.5005"))
    result = cli("validate", "offstep.yaml")
    assert result.code == 1
    assert "offstep.yaml:11:" in result.err
    schema = json.loads(cli("schema").out)
    assert schema["title"]


def test_embedded_sandbox_keeps_state_across_runs(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    Path("desired.yaml").write_text(DESIRED)
    assert run(["apply", "--sandbox", "--auto-approve", "-f", "desired.yaml"]) == 0
    capsys.readouterr()
    assert run(["plan", "--sandbox", "-f", "desired.yaml", "--detailed-exitcode"]) == 0
    assert "No changes" in capsys.readouterr().out
    assert (tmp_path / ".reconciler" / "sandbox.db").exists()


def test_saved_plan_with_another_file_is_refused_with_exit_3(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli("plan", "-f", "desired.yaml", "--out", "plan.json").code == 0
    (tmp_path / "desired.yaml").write_text(DESIRED.replace("size: 0.5", "size: 0.7"))
    sandbox.clear_requests()
    result = cli("apply", "plan.json", "-f", "desired.yaml")
    assert result.code == 3, result.err
    assert "re-run plan" in result.err
    assert writes(sandbox) == []


def test_verbose_run_never_shows_the_secret(cli, sandbox, tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("DEBUG")
    secret = "S3CRET-zq81-never-print-me"
    sandbox.create_account(user_id="leaky", key_id="leaky-key", secret=secret, balance=50000)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "leaky-key")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", secret)
    (tmp_path / "leaky.yaml").write_text(DESIRED.replace("user_id: demo", "user_id: leaky"))
    outputs = [
        cli("-vv", "plan", "-f", "leaky.yaml", "--out", "plan.json"),
        cli("-vv", "apply", "-f", "leaky.yaml", "--auto-approve"),
        cli("-vv", "plan", "-f", "desired.yaml"),  # another user's account: refused
    ]
    assert [result.code for result in outputs] == [0, 0, 1]
    for result in outputs:
        assert secret not in result.out + result.err
    assert "POST /api/v1/order" in caplog.text  # the request log lines were written...
    assert secret not in caplog.text  # ...and none of them holds the secret
    for path in tmp_path.rglob("*"):
        if path.is_file() and ".db" not in path.name:  # the exchange's own store holds keys
            assert secret.encode() not in path.read_bytes(), path


def test_credentials_file_is_used_and_refused_when_others_can_read_it(
    cli, sandbox, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("LEVRET_API_KEY_ID")
    monkeypatch.delenv("LEVRET_API_KEY_SECRET")
    credentials = tmp_path / "levret.env"
    credentials.write_text("LEVRET_API_KEY_ID=demo-key\nLEVRET_API_KEY_SECRET=demo-secret\n")
    credentials.chmod(0o600)
    monkeypatch.setenv("LEVRET_CREDENTIALS_FILE", str(credentials))
    assert cli("plan", "-f", "desired.yaml").code == 0
    credentials.chmod(0o644)
    sandbox.clear_requests()
    refused = cli("plan", "-f", "desired.yaml")
    assert refused.code == 1
    assert "chmod 600" in refused.err
    assert "demo-secret" not in refused.err
    assert sandbox.requests() == []


def test_apply_under_read_lag_longer_than_the_visibility_timeout_exits_5_naming_the_ids(
    cli, sandbox
) -> None:  # type: ignore[no-untyped-def]
    """The reads trail by 3 s and apply may wait 0.5 s: it stops (exit 5), names the accepted
    calls it could not see, and sends none of them twice. Before, it placed the same orders
    again on every pass. A later apply from reads that caught up finishes the job exactly."""
    sandbox.set_faults({"read_lag_ms": 3_000})
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve", "--visibility-timeout", "500ms")
    assert applied.code == 5, applied.err
    shown = applied.out + applied.err
    assert "not visible after 0.5 s" in shown and "nothing was sent again" in shown
    first = writes(sandbox)
    assert first and all(entry["status"] == 200 for entry in first)
    assert len(first) == 4  # the plan's four calls (the increase carries TP/SL), each once
    sandbox.set_faults({})
    sandbox.clear_requests()
    again = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert again.code == 0, again.err
    btc = sandbox.exchange.open_orders("demo", "BTC_USDT", 1, 100, None, None)["items"]
    assert sorted((o["side"], o["price"]) for o in btc) == [("buy", 42000), ("sell", 52000)]
    positions = {p["symbol"]: p for p in sandbox.exchange.positions("demo", None)}
    assert positions["BTC_USDT"]["size"] == pytest.approx(0.5)
    assert "SOL_USDT" not in positions
