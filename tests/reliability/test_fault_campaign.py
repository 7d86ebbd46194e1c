"""The seeded slices of the fault campaign (`bench/faults.py`), in two workers, per profile.

The full campaign (2,000 scenarios per profile, docs/RELIABILITY.md) runs the same code; the
ideal slice (100 scenarios) keeps every fault kind in the suite's path on every run. The
realistic slice (24 scenarios, 8 at a time per worker, to keep the suite's time) lays the
same faults over the `realistic` sandbox profile: read lag, a book with depth, partial
resting fills, stops with slippage. Apply must still never duplicate an order nor overshoot a
target there: it waits for its own accepted writes to show in the lagging reads before it
re-plans.
"""

from __future__ import annotations

import time

import pytest

from bench.faults import KINDS, CampaignSummary, run_campaign, summarise

REALISTIC_SLICE = 24


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


@pytest.fixture(scope="module")
def realistic() -> CampaignSummary:
    started = time.monotonic()
    results = run_campaign(REALISTIC_SLICE, seed=1, workers=2, profile="realistic", lanes=8)
    return summarise(results, time.monotonic() - started)


def test_realistic_slice_keeps_the_books_and_the_journal(realistic: CampaignSummary) -> None:
    assert realistic.scenarios == REALISTIC_SLICE
    assert realistic.journal_mismatches == 0, realistic.violations
    assert realistic.accounting_errors == 0, realistic.violations
    for reason in realistic.not_converged_reasons:
        assert reason.startswith(("exit 5:", "exit 3: stale plan refused")), reason


def test_realistic_slice_never_duplicates_an_order(realistic: CampaignSummary) -> None:
    assert realistic.duplicates == 0, realistic.violations


def test_realistic_slice_never_overshoots(realistic: CampaignSummary) -> None:
    assert realistic.overshoots == 0, realistic.violations


def test_realistic_slice_converges(realistic: CampaignSummary) -> None:
    assert realistic.converged >= REALISTIC_SLICE * 8 // 10, realistic.not_converged_reasons
