"""The seeded 100-scenario slice of the fault campaign (`bench/faults.py`), in two workers.

The full campaign (2,000 scenarios, docs/RELIABILITY.md) runs the same code; this slice keeps
every fault kind in the suite's path on every run.
"""

from __future__ import annotations

import time

from bench.faults import KINDS, run_campaign, summarise


def test_seeded_slice_loses_nothing() -> None:
    started = time.monotonic()
    results = run_campaign(100, seed=1, workers=2)
    summary = summarise(results, time.monotonic() - started)
    assert summary.scenarios == 100
    assert summary.overshoots == 0, summary.violations
    assert summary.duplicates == 0, summary.violations
    assert summary.journal_mismatches == 0, summary.violations
    assert summary.accounting_errors == 0, summary.violations
    assert set(summary.scenarios_by_kind) == set(KINDS)
    assert summary.converged >= 80, summary.not_converged_reasons
    # Whatever did not converge says why, and the reasons are the expected safe stops.
    for reason in summary.not_converged_reasons:
        assert reason.startswith(("exit 5:", "exit 3: stale plan refused")), reason
