"""`plan --rehearse` / `apply --rehearse`, end to end against a sandbox standing in for the
live exchange (realistic profile: a book with depth, stop slippage; no read lag).

The rehearsal copies that account into an in-process sandbox and runs the plan there; the
stand-in's request log proves it received only reads. Then the real apply follows, and its
fills are compared with the rehearsal's.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import Invoke, make_invoke, point_at, writes


@pytest.fixture
def cli(sandbox, tmp_path, monkeypatch, capsys) -> Invoke:  # type: ignore[no-untyped-def]
    point_at(monkeypatch, sandbox, tmp_path)
    sandbox.control("POST", "profile", {"name": "realistic"})
    sandbox.set_faults({"read_lag_ms": 0})
    return make_invoke(capsys)


def _write(tmp_path: Path, text: str) -> str:
    (tmp_path / "desired.yaml").write_text("version: 1\naccount: {user_id: demo}\n" + text)
    return "desired.yaml"


LARGE = """\
symbols:
  BTC_USDT:
    position: {side: long, size: 1.5, leverage: 10}
  SOL_USDT:
    orders: []
"""


def test_plan_rehearse_shows_the_copys_fills_and_slippage_and_sends_nothing(
    cli: Invoke, sandbox: Any, tmp_path: Path
) -> None:
    name = _write(tmp_path, LARGE)
    result = cli("plan", "-f", name, "--rehearse")
    assert result.code == 0, result.err
    assert "Rehearsal on a copy of the account (converged; nothing was sent" in result.out
    btc = re.search(
        r"BTC_USDT: long 1\.500 at 10x.*\n +(\d+) fill\(s\), average ([\d.]+)", result.out
    )
    assert btc is not None, result.out
    assert int(btc.group(1)) > 1  # a 1.3 BTC buy walks the book
    assert Decimal(btc.group(2)) > Decimal(45000)  # and pays for it: slippage shown
    assert "SOL_USDT: flat" in result.out
    assert "approximated:" in result.out
    assert writes(sandbox) == []  # the stand-in for the live exchange got reads only

    document = json.loads(cli("plan", "-f", name, "--rehearse", "--format", "json").out)
    assert document["plan"]["actions"] and document["rehearsal"]["converged"] is True
    (btc_data,) = [s for s in document["rehearsal"]["symbols"] if s["symbol"] == "BTC_USDT"]
    assert btc_data["position"]["size"] == Decimal("1.5") and btc_data["fees"] > 0


def test_apply_rehearse_applies_and_the_prediction_matches_what_happened(
    cli: Invoke, sandbox: Any, tmp_path: Path
) -> None:
    name = _write(tmp_path, LARGE)
    result = cli("apply", "-f", name, "--rehearse", "--auto-approve")
    assert result.code == 0, result.err
    line = next(x for x in result.err.splitlines() if x.strip().startswith("BTC_USDT: filled"))
    predicted, actual = re.findall(r"filled ([\d.]+) -> ([\d.]+)", line)[0]
    assert Decimal(predicted) == Decimal(actual) == Decimal("1.3")
    prices = re.findall(r"average ([\d.]+) -> ([\d.]+)", line)[0]
    # the same synthetic book around the same mark: the prediction is the price paid
    assert abs(Decimal(prices[0]) - Decimal(prices[1])) <= Decimal("0.0001") * Decimal(prices[1])
    (btc,) = sandbox.exchange.positions("demo", "BTC_USDT")
    assert btc["size"] == Decimal("1.5")


def test_a_plan_the_exchange_would_refuse_for_margin_is_refused_before_anything_is_sent(
    cli: Invoke, sandbox: Any, tmp_path: Path
) -> None:
    # 60 BTC at 10x needs 270,000 of margin; the demo wallet holds 100,000
    name = _write(
        tmp_path, "symbols:\n  BTC_USDT:\n    position: {side: long, size: 60, leverage: 10}\n"
    )
    planned = cli("plan", "-f", name, "--rehearse")
    assert planned.code == 3, planned.out + planned.err
    assert "refused: place_order [INSUFFICIENT_MARGIN]" in planned.out
    assert "did not converge" in planned.err
    applied = cli("apply", "-f", name, "--rehearse", "--auto-approve")
    assert applied.code == 3, applied.out + applied.err
    assert "INSUFFICIENT_MARGIN" in applied.err and "nothing was sent" in applied.err
    assert writes(sandbox) == []
    # without the rehearsal the same plan is refused by the exchange itself, after sending
    real = cli("apply", "-f", name, "--auto-approve")
    assert real.code == 5 and "INSUFFICIENT_MARGIN" in real.err
