"""Golden scenarios: `tests/scenarios/<name>/{desired.yaml, live.json}` -> `plan.json`, `plan.txt`.

Each folder is collected automatically. Set `RECONCILER_UPDATE_GOLDEN=1` to rewrite the
expected files after a deliberate change, then review the diff like any other code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.jsonnum import loads
from reconciler.levret import parse
from reconciler.levret.requests import calls_for
from reconciler.model import desired as spec
from reconciler.model.snapshot import needs
from reconciler.plan import plan, symbols_placing_orders
from reconciler.render.plan import load_plan, render_json, render_text

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
UPDATE = os.environ.get("RECONCILER_UPDATE_GOLDEN") == "1"
NAMES = sorted(path.name for path in SCENARIOS.iterdir() if (path / "desired.yaml").is_file())


def test_the_corpus_covers_every_kind_of_change() -> None:
    assert len(NAMES) >= 16


@pytest.mark.parametrize("name", NAMES)
def test_scenario(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = SCENARIOS / name
    monkeypatch.chdir(folder)  # file names in messages stay relative, as a user would see
    desired = spec.load("desired.yaml")
    live = parse.snapshot(loads((folder / "live.json").read_bytes()))
    result = plan(desired, live)
    rendered = {
        "plan.json": render_json(result, call_of=calls_for(result.user_id)),
        "plan.txt": render_text(result, call_of=calls_for(result.user_id)),
    }
    if UPDATE:
        for file_name, text in rendered.items():
            (folder / file_name).write_text(text, encoding="utf-8")
    for file_name, text in rendered.items():
        expected = (folder / file_name).read_text(encoding="utf-8")
        assert text == expected, f"{name}/{file_name} differs; RECONCILER_UPDATE_GOLDEN=1 rewrites"
    assert load_plan(rendered["plan.json"], calls_for=calls_for) == result
    # the live file is exactly what the reader would have fetched for this desired state
    read = needs(desired)
    placing = symbols_placing_orders(desired, live) - set(live.positions)
    assert set(live.marks) >= read.stats_for(live.positions) | placing
    assert (live.equity is not None) == read.equity
