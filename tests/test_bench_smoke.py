"""The benchmark code must not rot: generator + one plan/apply at the smallest size.

Runs the same code `bench/run.py` runs, on 3 symbols, and holds the two exact claims the
benchmark makes: `plan` reads exactly the lower bound, and `apply` writes exactly the minimum
the generator computed from what it changed; the start-up benchmark runs both its programs
once, and the rehearsal benchmark (`bench/rehearse.py`) runs on 3 symbols. Timing is the
benchmark's business, not this test's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` is not installed

from bench.harness import LIFTED_LIMIT, build_template, measure_plan_apply
from bench.portfolio import generate
from bench.rehearse import measure as measure_rehearsal
from bench.startup import measure as measure_startup


def test_generator_is_deterministic() -> None:
    first, second = generate(20, seed=3), generate(20, seed=3)
    assert first.desired() == second.desired()
    assert (first.min_writes, first.min_plan_reads) == (second.min_writes, second.min_plan_reads)
    assert generate(20, seed=4).desired() != first.desired()


def test_plan_reads_and_apply_writes_hit_their_bounds(tmp_path: Path) -> None:
    portfolio = generate(3, seed=8, change_share=1.0)
    assert portfolio.min_writes > 0
    template = tmp_path / "template.db"
    build_template(portfolio, template)

    result = measure_plan_apply(portfolio, template, tmp_path, rate_limit=LIFTED_LIMIT)

    assert result.converged
    assert result.plan_reads / portfolio.min_plan_reads == 1.0
    assert result.plan_actions == portfolio.min_writes
    assert result.apply_writes / portfolio.min_writes == 1.0
    assert result.apply_429 == 0


def test_startup_benchmark_runs_both_programs() -> None:
    ours, bare = measure_startup(1)  # a failing `--help` of either raises (`check=True`)
    assert len(ours) == len(bare) == 1
    assert min(ours + bare) > 0


def test_the_rehearsal_benchmark_converges_on_its_copy() -> None:
    portfolio = generate(3, seed=8, change_share=1.0)
    calls, converged, seconds = measure_rehearsal(3, seed=8, repetitions=2, change_share=1.0)
    assert converged
    assert calls == portfolio.min_writes  # the copy's plan makes the generator's minimum
    assert len(seconds) == 2
