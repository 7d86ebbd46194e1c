"""Start-up: `reconciler --help` cold, against a bare click program, both as whole processes.

Target (`docs/BENCHMARKS.md`, "Start-up"): at most 2x the bare click program. Each run is a
fresh `python` process (interpreter start, imports, help, exit), timed by wall clock; the two
programs alternate so that load on the machine falls on both alike. The first run of each is
a warm-up (it writes the bytecode caches) and is not counted.

    python -m bench.startup [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["BARE_CLICK", "RECONCILER", "measure"]

TARGET_RATIO = 2.0

BARE_CLICK = (
    "import click\n"
    "@click.group()\n"
    "def main() -> None:\n"
    '    """A bare click program."""\n'
    "@main.command()\n"
    "def hello() -> None:\n"
    '    """Say hello."""\n'
    "main(['--help'])\n"
)
"""A click group with one command, asked for its help: the floor any click CLI pays."""

BARE: tuple[str, ...] = (sys.executable, "-c", BARE_CLICK)
RECONCILER: tuple[str, ...] = (sys.executable, "-m", "reconciler", "--help")


def _seconds(command: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(runs: int) -> tuple[list[float], list[float]]:
    """(seconds of each `reconciler --help` run, seconds of each bare click run)."""
    _seconds(RECONCILER)
    _seconds(BARE)
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(runs):
        ours.append(_seconds(RECONCILER))
        bare.append(_seconds(BARE))
    return ours, bare


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    ours, bare = measure(args.runs)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(
        f"{args.runs} cold runs each: reconciler --help median "
        f"{statistics.median(ours) * 1000:.0f} ms (min {min(ours) * 1000:.0f}, max "
        f"{max(ours) * 1000:.0f}); bare click --help median "
        f"{statistics.median(bare) * 1000:.0f} ms (min {min(bare) * 1000:.0f}, max "
        f"{max(bare) * 1000:.0f}); ratio {ratio:.2f}x; "
        f"target <= {TARGET_RATIO:g}x: {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
