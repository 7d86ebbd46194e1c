"""The planner alone: CPU time and peak memory of `plan()` on a large in-memory snapshot.

No server and no network: the snapshot (500 symbols, 20 resting orders each, so 10,000
orders) is built in memory from the generator, so the number is the planner's own cost.
Memory is measured in a child process (`python -m bench.planner_cpu --memory`) so that the
benchmark's other work (servers, templates) cannot inflate the peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from bench.portfolio import Portfolio, generate
from reconciler.plan import plan

__all__ = ["MemoryResult", "big_portfolio", "measure_cpu", "measure_memory"]

SYMBOLS = 500
ORDERS_PER_SYMBOL = 20


def big_portfolio(seed: int) -> Portfolio:
    return generate(SYMBOLS, seed=seed, orders=(ORDERS_PER_SYMBOL, ORDERS_PER_SYMBOL))


def measure_cpu(seed: int, repetitions: int) -> tuple[int, int, list[float]]:
    """(orders, actions, CPU seconds of each `plan()` call) for the big portfolio."""
    portfolio = big_portfolio(seed)
    desired = portfolio.desired()
    seconds: list[float] = []
    actions = 0
    for _ in range(repetitions):
        # A fresh snapshot each time: a snapshot caches its fingerprints, and a real plan
        # is made once from each read.
        snapshot = portfolio.snapshot()
        started = time.process_time()
        result = plan(desired, snapshot)
        seconds.append(time.process_time() - started)
        actions = len(result.actions)
    if actions != portfolio.min_writes:
        raise RuntimeError(f"planner made {actions} actions, minimum is {portfolio.min_writes}")
    return portfolio.live_orders, actions, seconds


@dataclass(frozen=True)
class MemoryResult:
    plan_peak_mb: float  # tracemalloc peak while `plan()` runs, above what existed before
    process_peak_mb: float  # ru_maxrss of the whole child: interpreter, snapshot and plan


def measure_memory(seed: int) -> MemoryResult:
    root = Path(__file__).resolve().parent.parent
    output = subprocess.run(
        [sys.executable, "-m", "bench.planner_cpu", "--memory", "--seed", str(seed)],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(output)
    return MemoryResult(data["plan_peak_mb"], data["process_peak_mb"])


def _memory_child(seed: int) -> None:
    portfolio = big_portfolio(seed)
    desired, snapshot = portfolio.desired(), portfolio.snapshot()
    tracemalloc.start()
    tracemalloc.reset_peak()
    baseline, _ = tracemalloc.get_traced_memory()
    plan(desired, snapshot)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "plan_peak_mb": (peak - baseline) / 2**20,
                "process_peak_mb": maxrss_kb / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory", action="store_true", help="print the memory peaks as JSON")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    if args.memory:
        _memory_child(args.seed)
        return
    orders, actions, seconds = measure_cpu(args.seed, args.repetitions)
    print(f"{SYMBOLS} symbols, {orders} orders, {actions} actions: {sorted(seconds)} s CPU")


if __name__ == "__main__":
    main()
