"""Several accounts in one run: `-f DIR` / repeated `-f`, grouped output, the most severe exit.

The two accounts of `examples/accounts/` are created in the sandbox with their own keys, and
the environment variables each file names are set, as a CI job's secrets would be.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconciler.exitcodes import SEVERITY, most_severe
from tests.cli.cli_support import (
    EXAMPLES,
    Invoke,
    TerminalInput,
    make_invoke,
    point_at,
    writes,
)

ACCOUNTS = EXAMPLES / "accounts"


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    for user in ("alpha", "beta"):
        sandbox.create_account(user, f"{user}-key", f"{user}-secret")
        monkeypatch.setenv(f"{user.upper()}_LEVRET_API_KEY_ID", f"{user}-key")
        monkeypatch.setenv(f"{user.upper()}_LEVRET_API_KEY_SECRET", f"{user}-secret")
    return make_invoke(capsys)


def positions(sandbox: Any, user: str) -> dict[str, dict[str, Any]]:
    return {p["symbol"]: p for p in sandbox.exchange.positions(user, None)}


def test_a_directory_plans_each_account_with_its_own_key_then_applies(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    planned = cli("plan", "-f", str(ACCOUNTS), "--format", "markdown", "--detailed-exitcode")
    assert planned.code == 2, planned.err
    assert f"## {ACCOUNTS / 'alpha.yaml'} (account alpha, exit 2)" in planned.out
    assert f"## {ACCOUNTS / 'beta.yaml'} (account beta, exit 2)" in planned.out
    assert planned.out.index("alpha.yaml") < planned.out.index("beta.yaml")
    assert "### Plan for `alpha`" in planned.out and "### Plan for `beta`" in planned.out
    keys = {entry["keyId"] for entry in sandbox.requests() if entry["keyId"]}
    assert keys == {"alpha-key", "beta-key"}
    assert writes(sandbox) == []

    applied = cli("apply", "-f", str(ACCOUNTS), "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    assert "every account converged" in applied.err
    assert positions(sandbox, "alpha")["ETH_USDT"]["size"] == 4
    assert positions(sandbox, "beta")["SOL_USDT"]["side"] == "long"
    assert positions(sandbox, "demo")["BTC_USDT"]["size"] == Decimal("0.2")  # untouched

    assert cli("plan", "-f", str(ACCOUNTS), "--detailed-exitcode").code == 0
    assert cli("drift", "-f", str(ACCOUNTS)).code == 0


def test_repeated_files_give_one_json_document(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "plan", "-f", str(ACCOUNTS / "beta.yaml"), "-f", str(ACCOUNTS / "alpha.yaml"),
        "--format", "json", "--detailed-exitcode",
    )  # fmt: skip
    assert result.code == 2
    document = json.loads(result.out)
    assert document["exit_code"] == 2
    assert [a["user_id"] for a in document["accounts"]] == ["beta", "alpha"]
    assert all(a["plan"]["actions"] for a in document["accounts"])


def test_exit_code_is_the_most_severe_and_other_accounts_still_plan(  # type: ignore[no-untyped-def]
    cli, monkeypatch, tmp_path
) -> None:
    monkeypatch.delenv("BETA_LEVRET_API_KEY_SECRET")
    result = cli("plan", "-f", str(ACCOUNTS), "--detailed-exitcode")
    assert result.code == 1
    assert "BETA_LEVRET_API_KEY_SECRET" in result.out  # in beta's own section
    assert "Plan for alpha" in result.out
    assert "exit 1 (" in result.err

    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "alpha.yaml").write_text((ACCOUNTS / "alpha.yaml").read_text())
    text = (ACCOUNTS / "alpha.yaml").read_text().replace("alpha", "beta").replace("ALPHA", "BETA")
    (strict / "beta.yaml").write_text(
        text.replace("max_gross_notional: 60000", "max_gross_notional: 10")
    )
    monkeypatch.setenv("BETA_LEVRET_API_KEY_SECRET", "beta-secret")
    result = cli("plan", "-f", str(strict), "--detailed-exitcode")
    assert result.code == 4  # a violation outranks "changes present"
    assert "violation" in result.out


def test_apply_with_a_violation_applies_the_other_account_and_exits_4(  # type: ignore[no-untyped-def]
    cli, sandbox, tmp_path
) -> None:
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "alpha.yaml").write_text((ACCOUNTS / "alpha.yaml").read_text())
    beta = (ACCOUNTS / "beta.yaml").read_text()
    (folder / "beta.yaml").write_text(
        beta.replace("max_gross_notional: 40000", "max_gross_notional: 10")
    )
    result = cli("apply", "-f", str(folder), "--auto-approve")
    assert result.code == 4, result.err
    assert "ETH_USDT" in positions(sandbox, "alpha")
    assert positions(sandbox, "beta") == {}


def test_prompt_once_per_account_and_a_no_declines_only_that_one(  # type: ignore[no-untyped-def]
    cli, sandbox, monkeypatch
) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput("yes\nno\n"))
    result = cli("apply", "-f", str(ACCOUNTS))
    assert result.code == 7
    assert result.err.count("Only 'yes' will be accepted.") == 2
    assert positions(sandbox, "alpha")
    assert positions(sandbox, "beta") == {}
    assert not [w for w in writes(sandbox) if w["keyId"] == "beta-key"]


def test_saved_plan_directory_round_trip_and_staleness(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    assert cli("plan", "-f", str(ACCOUNTS), "--out", "plans").code == 0
    assert sorted(p.name for p in Path("plans").iterdir()) == ["alpha.json", "beta.json"]
    sandbox.exchange.place_order(
        "beta",
        {"userId": "beta", "symbol": "SOL_USDT", "side": "buy", "orderType": "limit",
         "size": 1, "price": 80},
    )  # fmt: skip
    result = cli("apply", "plans", "-f", str(ACCOUNTS))
    assert result.code == 3, result.err  # beta's plan went stale; alpha's still applied
    assert positions(sandbox, "alpha")
    assert positions(sandbox, "beta") == {}


def test_two_files_for_one_account_are_refused_before_any_request(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "copy.yaml").write_text((ACCOUNTS / "alpha.yaml").read_text())
    sandbox.clear_requests()
    result = cli("plan", "-f", str(ACCOUNTS / "alpha.yaml"), "-f", "copy.yaml")
    assert result.code == 1
    assert "one file per account" in result.err
    assert sandbox.requests() == []


def test_a_bad_file_stops_every_account_before_any_request(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.yaml").write_text("version: 1\nsymbols: {BTC_USDT: {position: {side: up}}}\n")
    sandbox.clear_requests()
    result = cli("apply", "-f", str(ACCOUNTS), "-f", "bad.yaml", "--auto-approve")
    assert result.code == 1
    assert "bad.yaml:2:" in result.err
    assert sandbox.requests() == []


def test_an_empty_directory_is_an_error(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    result = cli("plan", "-f", "empty")
    assert result.code == 1
    assert "no *.yaml" in result.err


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 0),
        ([0, 2, 0], 2),
        ([2, 7], 7),
        ([7, 6], 6),
        ([6, 3, 2], 3),
        ([3, 4], 4),
        ([4, 1, 2], 1),
        ([1, 5, 0], 5),
    ],
)
def test_severity_order(codes: list[int], expected: int) -> None:
    assert most_severe(codes) == expected
    assert SEVERITY[0] == 5 and SEVERITY[-1] == 0


def test_an_account_left_with_an_infeasible_symbol_exits_2_and_names_it(  # type: ignore[no-untyped-def]
    cli, sandbox, tmp_path
) -> None:
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    (accounts / "alpha.yaml").write_text((ACCOUNTS / "alpha.yaml").read_text())
    (accounts / "beta.yaml").write_text(
        "version: 1\n"
        "account:\n"
        "  user_id: beta\n"
        "  credentials_env: {key_id: BETA_LEVRET_API_KEY_ID, secret: BETA_LEVRET_API_KEY_SECRET}\n"
        "symbols:\n"
        "  DOGE_USDT:\n"
        "    position: {side: long, notional: 0.5}\n"
    )
    applied = cli("apply", "-f", str(accounts), "--auto-approve")
    assert applied.code == 2, applied.out + applied.err
    assert f"{accounts / 'beta.yaml'} (account beta, exit 2): changes remain" in applied.err
    assert "symbols.DOGE_USDT.position.notional" in applied.err
    assert "minimum size" in applied.err
    assert positions(sandbox, "alpha")["ETH_USDT"]["size"] == 4  # the other account converged
    assert "DOGE_USDT" not in positions(sandbox, "beta")
