"""Run every benchmark and print the markdown tables pasted into docs/BENCHMARKS.md.

    .venv/bin/python bench/run.py --quick     # 10 and 100 symbols
    .venv/bin/python bench/run.py             # 10, 100 and 500 symbols

Each size is generated (seeded), built once into a template database, then every repetition
serves a fresh copy: `plan` + `apply` with the limit lifted, the same at the default
1200/min, and the baseline script (limit lifted). Times are min / median / max.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import BaselineResult, rebalance
from bench.harness import (
    DEFAULT_LIMIT,
    LIFTED_LIMIT,
    RunResult,
    build_template,
    copy_db,
    measure_plan_apply,
    serve,
)
from bench.planner_cpu import measure_cpu, measure_memory
from bench.portfolio import KEY_ID, KEY_SECRET, Portfolio, generate

APPLY_BOUND_FACTOR = 1.10
PER_SECOND = DEFAULT_LIMIT / 60
CPU_TARGET_S = 0.2
MEMORY_TARGET_MB = 150.0


@dataclass
class SizeResult:
    symbols: int
    portfolio: Portfolio
    build_s: float
    lifted: list[RunResult] = field(default_factory=list)
    limited: list[RunResult] = field(default_factory=list)
    baseline: list[BaselineResult] = field(default_factory=list)


def spread(values: Sequence[float], digits: int = 2) -> str:
    """`min / median / max`."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def run_size(
    symbols: int,
    *,
    seed: int,
    change_share: float,
    repetitions: int,
    baseline_repetitions: int,
    work: Path,
) -> SizeResult:
    portfolio = generate(symbols, seed=seed, change_share=change_share)
    template = work / f"template-{symbols}.db"
    result = SizeResult(symbols, portfolio, build_template(portfolio, template))
    for repetition in range(repetitions):
        result.lifted.append(measure_plan_apply(portfolio, template, work, rate_limit=LIFTED_LIMIT))
        result.limited.append(
            measure_plan_apply(portfolio, template, work, rate_limit=DEFAULT_LIMIT)
        )
        if repetition < baseline_repetitions:
            result.baseline.append(run_baseline(portfolio, template, work))
    return result


def run_baseline(portfolio: Portfolio, template: Path, work: Path) -> BaselineResult:
    db = work / f"baseline-{time.monotonic_ns()}.db"
    copy_db(template, db)
    with serve(db, LIFTED_LIMIT) as (server, _control):
        outcome = rebalance(server.api_url, KEY_ID, KEY_SECRET, portfolio.desired())
    for path in work.glob(db.name + "*"):
        path.unlink()
    return outcome


def calls_table(results: list[SizeResult]) -> str:
    rows = [
        "| symbols | live orders | symbols changed | plan reads / lower bound | read ratio "
        "| apply writes / minimum | write ratio | apply calls (reads + writes) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in results:
        p = size.portfolio
        runs = size.lifted + size.limited
        reads = sorted({run.plan_reads for run in runs})
        writes = sorted({run.apply_writes for run in runs})
        read_ratio = max(reads) / p.min_plan_reads
        write_ratio = max(writes) / p.min_writes
        apply_reads = sorted({run.apply_reads for run in runs})
        changed = sum(1 for case in p.cases if case.changes)
        rows.append(
            f"| {size.symbols} | {p.live_orders} | {changed} "
            f"| {'/'.join(map(str, reads))} / {p.min_plan_reads} "
            f"| {read_ratio:.2f} ({verdict(math.isclose(read_ratio, 1.0))}) "
            f"| {'/'.join(map(str, writes))} / {p.min_writes} "
            f"| {write_ratio:.2f} ({verdict(math.isclose(write_ratio, 1.0))}) "
            f"| {'/'.join(map(str, apply_reads))} + {'/'.join(map(str, writes))} |"
        )
    return "\n".join(rows)


def time_table(results: list[SizeResult]) -> str:
    rows = [
        "| symbols | plan s, lifted | plan s, 1200/min | apply s, lifted | apply s, 1200/min "
        "| bound: apply calls / 20 per s | ratio (target <= 1.10) | bound: minimum writes / 20 "
        "per s | ratio | 429s | converged |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for size in results:
        limited = size.limited
        calls = statistics.median(run.apply_calls for run in limited)
        bound = calls / PER_SECOND
        ratio = statistics.median(run.apply_s for run in limited) / bound
        write_bound = size.portfolio.min_writes / PER_SECOND
        write_ratio = statistics.median(run.apply_s for run in limited) / write_bound
        too_many = sum(run.apply_429 for run in size.lifted + limited)
        converged = all(run.converged for run in size.lifted + limited)
        rows.append(
            f"| {size.symbols} | {spread([r.plan_s for r in size.lifted])} "
            f"| {spread([r.plan_s for r in limited])} "
            f"| {spread([r.apply_s for r in size.lifted])} "
            f"| {spread([r.apply_s for r in limited])} "
            f"| {bound:.2f} | {ratio:.2f} ({verdict(ratio <= APPLY_BOUND_FACTOR)}) "
            f"| {write_bound:.2f} | {write_ratio:.2f} "
            f"({verdict(write_ratio <= APPLY_BOUND_FACTOR)}) "
            f"| {too_many} ({verdict(too_many == 0)}) | {'yes' if converged else '**no**'} |"
        )
    return "\n".join(rows)


def baseline_table(results: list[SizeResult]) -> str:
    rows = [
        "| symbols | baseline calls | reconciler calls (plan + apply) | call ratio "
        "| baseline s, lifted | reconciler s, lifted (plan + apply) | time ratio "
        "| baseline at 1200/min, at least ((calls - 1200) / 20 per s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in results:
        base_calls = statistics.median(b.calls for b in size.baseline)
        ours = statistics.median(r.plan_reads + r.apply_calls for r in size.lifted)
        base_s = [b.seconds for b in size.baseline]
        ours_s = [r.plan_s + r.apply_s for r in size.lifted]
        rows.append(
            f"| {size.symbols} | {base_calls:.0f} | {ours:.0f} | {base_calls / ours:.2f}x "
            f"| {spread(base_s)} | {spread(ours_s)} "
            f"| {statistics.median(base_s) / statistics.median(ours_s):.2f}x "
            f"| {max(0.0, base_calls - DEFAULT_LIMIT) / PER_SECOND:.1f} s |"
        )
    return "\n".join(rows)


def planner_table(seed: int, repetitions: int) -> str:
    orders, actions, seconds = measure_cpu(seed, max(5, repetitions))
    memory = measure_memory(seed)
    best = statistics.median(seconds)
    return "\n".join(
        [
            "| snapshot | actions | `plan()` CPU s (min / median / max) | target "
            "| `plan()` tracemalloc peak | process peak RSS | target |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| 500 symbols, {orders} orders | {actions} | {spread(seconds, 3)} "
            f"| < {CPU_TARGET_S} s ({verdict(best < CPU_TARGET_S)}) "
            f"| {memory.plan_peak_mb:.1f} MB | {memory.process_peak_mb:.1f} MB "
            f"| < {MEMORY_TARGET_MB:.0f} MB "
            f"({verdict(memory.process_peak_mb < MEMORY_TARGET_MB)}) |",
        ]
    )


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="plan/apply benchmarks against the sandbox")
    parser.add_argument("--quick", action="store_true", help="10 and 100 symbols only")
    parser.add_argument("--sizes", type=int, nargs="+", help="symbol counts (overrides --quick)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--change-share",
        type=float,
        help="share of symbols the desired state changes (default 0.3; 0.1 with --quick, "
        "so that the rate-limited applies fit in two minutes)",
    )
    parser.add_argument(
        "--baseline-repetitions",
        type=int,
        help="repetitions of the baseline script (default: --repetitions; 1 with --quick, "
        "where it would take most of the two minutes)",
    )
    args = parser.parse_args(argv)
    if args.baseline_repetitions is None:
        args.baseline_repetitions = 1 if args.quick else args.repetitions
    if args.change_share is None:
        args.change_share = 0.1 if args.quick else 0.3
    sizes: list[int] = args.sizes or ([10, 100] if args.quick else [10, 100, 500])
    started = time.perf_counter()
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        for symbols in sizes:
            log(f"{symbols} symbols ...")
            results.append(
                run_size(
                    symbols,
                    seed=args.seed,
                    change_share=args.change_share,
                    repetitions=args.repetitions,
                    baseline_repetitions=min(args.baseline_repetitions, args.repetitions),
                    work=Path(tmp),
                )
            )
            elapsed = time.perf_counter() - started
            log(f"  built in {results[-1].build_s:.1f} s; done at {elapsed:.0f} s")
    planner = planner_table(args.seed, args.repetitions)
    elapsed = time.perf_counter() - started
    command = "python bench/run.py" + (" --quick" if args.quick and not args.sizes else "")
    if args.sizes:
        command += " --sizes " + " ".join(map(str, sizes))
    print(
        f"`{command}` (seed {args.seed}, change share {args.change_share}, "
        f"{args.repetitions} repetitions, baseline {args.baseline_repetitions}), "
        f"{time.strftime('%Y-%m-%d')}, "
        f"Python {platform.python_version()}, total {elapsed:.0f} s\n"
    )
    print("### Calls\n")
    print(calls_table(results) + "\n")
    print("### Wall time (s, min / median / max)\n")
    print(time_table(results) + "\n")
    print("### Against the baseline script (limit lifted)\n")
    print(baseline_table(results) + "\n")
    print("### Planner alone\n")
    print(planner + "\n")


if __name__ == "__main__":
    main()
