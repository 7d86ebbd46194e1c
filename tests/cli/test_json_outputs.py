"""`apply --format json` and `validate --format json`: one parseable document each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import Invoke, make_invoke, point_at, writes
from tests.cli.test_cli_flow import DESIRED

BAD_INPUTS = Path(__file__).resolve().parents[1] / "bad_inputs"


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_apply_json_is_one_document_of_plan_outcomes_passes_and_journal(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve", "--format", "json")
    assert applied.code == 0, applied.err
    document = json.loads(applied.out)  # the whole of stdout is one document
    assert document["result"] == "converged" and document["converged"] is True
    assert document["exit_code"] == 0
    planned = document["plan"]["actions"]
    assert planned and len(document["actions"]) >= len(planned)
    assert {item["outcome"] for item in document["actions"]} == {"accepted"}
    assert len(writes(sandbox)) == len(document["actions"])
    assert document["passes"][0]["number"] == 1
    assert Path(document["journal"]).is_file()

    again = cli("apply", "-f", "desired.yaml", "--auto-approve", "--format", "json")
    assert again.code == 0
    assert json.loads(again.out)["result"] == "no_changes"


def test_apply_json_says_how_an_unknown_outcome_was_settled(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.set_faults({"seed": 7, "drop_after_commit": 1.0})
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve", "--format", "json")
    sandbox.set_faults({})
    document = json.loads(applied.out)
    assert document["exit_code"] == applied.code
    settled = [item for item in document["actions"] if item["settlement"] is not None]
    assert settled, document["actions"]
    for item in settled:
        assert item["outcome"] in ("settled_executed", "settled_not_executed", "unknown")
        assert item["settlement"]["outcome"] == item["outcome"]


def test_apply_json_on_a_policy_violation_is_still_one_document(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    Path("desired.yaml").write_text(
        DESIRED.replace("max_leverage: 20", "max_leverage: 20\n  max_gross_notional: 10")
    )
    refused = cli("apply", "-f", "desired.yaml", "--auto-approve", "--format", "json")
    assert refused.code == 4, refused.err
    document = json.loads(refused.out)
    assert document["result"] == "policy_violation" and document["actions"] == []
    assert writes(sandbox) == []


def test_validate_json_lists_problems_with_file_line_column_field(cli) -> None:  # type: ignore[no-untyped-def]
    bad = str(BAD_INPUTS / "bad_side.yaml")
    checked = cli("validate", "--offline", "--format", "json", bad, "desired.yaml")
    assert checked.code == 1
    document = json.loads(checked.out)
    assert document["valid"] is False
    (problem,) = document["problems"]
    assert problem == {
        "file": bad,
        "line": 5,
        "column": 22,
        "field": "symbols.BTC_USDT.position.side",
        "message": "must be 'long', 'short' or 'flat'",
    }
    good = cli("validate", "--offline", "--format", "json", "desired.yaml")
    assert good.code == 0
    assert json.loads(good.out) == {
        "valid": True,
        "files": ["desired.yaml"],
        "specs_checked": False,
        "problems": [],
    }
