"""`reconciler history` and `history show ID` over the journals of real applies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import Invoke, make_invoke, point_at
from tests.cli.test_cli_flow import DESIRED


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_history_lists_past_applies_and_shows_one(cli) -> None:  # type: ignore[no-untyped-def]
    empty = cli("history")
    assert empty.code == 0 and "No journals" in empty.out
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve", "--format", "json")
    assert applied.code == 0, applied.err
    calls = len(json.loads(applied.out)["actions"])
    # A journal that a killed run left: an intent and no end record.
    (journal,) = Path(".reconciler/journal").glob("*.jsonl")
    lines = journal.read_text().splitlines()
    killed = journal.with_name("29990101T000000.000Z-demo-1.jsonl")
    killed.write_text("\n".join(lines[:3]) + "\n")

    listed = cli("history", "--format", "json")
    assert listed.code == 0
    first, second = json.loads(listed.out)["journals"]
    assert first["id"] == journal.stem and second["id"] == killed.stem
    assert first["account"] == "demo" and first["calls"] == calls
    assert first["result"] == "converged" and first["exit_code"] == 0
    assert second["result"].startswith("no end record")
    text = cli("history")
    assert text.out.splitlines()[0].split() == ["ID", "STARTED", "ACCOUNT", "CALLS", "RESULT"]
    assert f"{journal.stem}  " in text.out

    shown = cli("history", "show", journal.stem[:15], "--format", "json")
    assert shown.code == 0, shown.err
    document = json.loads(shown.out)
    assert len(document["actions"]) == calls
    assert {action["outcome"] for action in document["actions"]} == {"accepted"}
    assert all(isinstance(action["phase"], str) for action in document["actions"])
    assert document["records"][-1]["type"] == "end"
    rendered = cli("history", "show", journal.stem)
    assert rendered.code == 0
    assert "converged" in rendered.out.splitlines()[0]
    assert "cancel_orders" in rendered.out

    missing = cli("history", "show", "nope")
    assert missing.code == 1 and "no journal 'nope'" in missing.err
