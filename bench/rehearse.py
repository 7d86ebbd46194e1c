"""The rehearsal alone: a 100-symbol plan run on an in-process copy of the account.

Target (`docs/BENCHMARKS.md`): at most 2 s on top of the live reads. The live account here is
the generated portfolio as an in-memory snapshot with every mark, so the time measured is the
rehearsal's own: building the copy, planning on it, applying there, collecting the results.

    python -m bench.rehearse [--symbols 100] [--seed 1] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from bench.portfolio import generate
from reconciler.run.rehearse import rehearse

__all__ = ["measure"]


def measure(
    symbols: int, seed: int, repetitions: int, *, change_share: float = 0.3
) -> tuple[int, bool, list[float]]:
    """(calls the copy's plan made, converged, wall seconds of each rehearsal)."""
    portfolio = generate(symbols, seed=seed, change_share=change_share)
    desired = portfolio.desired()
    seconds: list[float] = []
    calls, converged = 0, True
    import reconciler.sandbox.app  # noqa: F401  (loading the sandbox once is not the cost measured)

    for _ in range(repetitions):
        snapshot = portfolio.snapshot()
        marks = {case.symbol: case.mark for case in portfolio.cases}
        snapshot = snapshot.model_copy(update={"marks": marks})
        started = time.perf_counter()
        result = asyncio.run(rehearse(desired, snapshot, portfolio.balance()))
        seconds.append(time.perf_counter() - started)
        calls = len(result.plan.actions)
        converged = converged and result.converged
    return calls, converged, seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    calls, converged, seconds = measure(args.symbols, args.seed, args.repetitions)
    median = statistics.median(seconds)
    print(
        f"rehearsal of {args.symbols} symbols, {calls} calls: converged={converged}, "
        f"median {median:.2f} s (runs: {', '.join(f'{s:.2f}' for s in seconds)}); "
        f"target <= 2 s: {'met' if median <= 2 and converged else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
