"""A 3-second version of `bench/load.py`: concurrent clients, then an audit to the cent."""

from __future__ import annotations

from bench.load import run_load


def test_short_load_run_keeps_every_account_exact() -> None:
    report = run_load(clients=20, seconds=3.0)
    assert report.findings == []
    assert report.accounts_audited == 20
    assert report.requests > 100 and report.outcomes.get("ok", 0) > 50
    assert "INTERNAL_ERROR" not in report.outcomes
