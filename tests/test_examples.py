"""The files in `examples/` are valid, fit the sandbox's demo account, and converge there."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import EXAMPLES, Invoke, make_invoke, point_at

SINGLE = ["desired-state.yaml", "weights.yaml", "ladder.yaml"]
ALL_FILES = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "accounts").glob("*.yaml"))


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    return make_invoke(capsys)


def test_the_expected_examples_exist() -> None:
    names = {path.relative_to(EXAMPLES).as_posix() for path in ALL_FILES}
    assert {*SINGLE, "accounts/alpha.yaml", "accounts/beta.yaml"} <= names


def test_every_example_is_valid_against_the_sandbox_specs(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", *map(str, ALL_FILES))
    assert result.code == 0, result.err
    assert "Symbol specs not checked" not in result.err


@pytest.mark.parametrize("name", SINGLE)
def test_example_applies_on_the_demo_account_and_converges(cli, name: str) -> None:  # type: ignore[no-untyped-def]
    path = str(EXAMPLES / name)
    planned = cli("plan", "-f", path, "--detailed-exitcode")
    assert planned.code == 2, planned.out + planned.err
    assert "Policy: ok" in planned.out
    applied = cli("apply", "-f", path, "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    assert cli("plan", "-f", path, "--detailed-exitcode").code == 0
    assert cli("drift", "-f", path).code == 0


def test_weights_hold_their_share_of_equity(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    assert cli("apply", "-f", str(EXAMPLES / "weights.yaml"), "--auto-approve").code == 0
    equity = Decimal(str(sandbox.exchange.account_overview("demo")["equity"]))
    marks = {"BTC_USDT": 45000, "ETH_USDT": 2500, "SOL_USDT": 100, "BNB_USDT": 310}
    weights = {"BTC_USDT": "0.30", "ETH_USDT": "0.20", "SOL_USDT": "0.10", "BNB_USDT": "0.05"}
    held = {p["symbol"]: p for p in sandbox.exchange.positions("demo", None)}
    for symbol, weight in weights.items():
        notional = Decimal(str(held[symbol]["size"])) * marks[symbol]
        assert abs(notional / equity - Decimal(weight)) < Decimal("0.005"), symbol
    assert held["BNB_USDT"]["side"] == "short"


def test_ladder_keeps_its_rungs_after_one_fills(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    path = str(EXAMPLES / "ladder.yaml")
    assert cli("apply", "-f", path, "--auto-approve").code == 0
    sandbox.set_prices({"BTC_USDT": 44000})  # the first buy rung fills...
    sandbox.set_prices({"BTC_USDT": 45000})  # ...and the mark comes back
    drifted = cli("drift", "-f", path)
    assert drifted.code == 2
    assert "BTC_USDT orders: live nothing" in drifted.out
    assert cli("apply", "-f", path, "--auto-approve").code == 0
    listed = sandbox.exchange.open_orders("demo", "BTC_USDT", 1, 100, None, None)
    assert len(listed["items"]) == 7
    assert Decimal(str(sandbox.exchange.positions("demo", "BTC_USDT")[0]["size"])) == Decimal(
        "0.21"
    )
