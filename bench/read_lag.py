"""What read lag costs: a write and a read on the 500-symbol benchmark account, lag off and on.

    python bench/read_lag.py

Builds the 500-symbol portfolio of `bench/run.py` into a scratch database, then times 100
resting orders placed and cancelled through the engine with `read_lag_ms` off and at 1500 ms
(each write then copies the database), and a `positions` read live and from the replica.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import build_template
from bench.portfolio import USER_ID, generate
from reconciler.sandbox.engine import Exchange
from reconciler.sandbox.replica import Replica
from reconciler.sandbox.store import Store

WRITES = 100


def _write_ms(exchange: Exchange) -> float:
    spec = exchange.supported_symbols()[0]
    started = time.perf_counter()
    placed = [
        exchange.place_order(
            USER_ID,
            {"symbol": spec["symbol"], "side": "buy", "orderType": "limit",
             "size": spec["minSize"], "price": spec["tickSize"] * (1000 + n)},
        )["id"]
        for n in range(WRITES)
    ]  # fmt: skip
    for order_id in placed:
        exchange.cancel_order(USER_ID, {"orderId": order_id})
    exchange.drain_events()
    return (time.perf_counter() - started) / (2 * WRITES) * 1000


def _read_ms(exchange: Exchange) -> float:
    started = time.perf_counter()
    exchange.positions(USER_ID, None)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="read-lag-") as scratch:
        db = Path(scratch) / "bench.db"
        build_template(generate(500, seed=8), db)
        exchange = Exchange(Store(db))
        replica = Replica(exchange)
        print(f"database: {len(exchange.store.image()) / 1e6:.1f} MB")
        print(f"write, lag off: {_write_ms(exchange):.2f} ms")
        replica.set_lag(1500)
        print(f"write, lag on: {_write_ms(exchange):.2f} ms")
        print(f"copies held: {replica.held_bytes() / 1e6:.1f} MB")
        print(f"read, live: {_read_ms(exchange):.2f} ms")
        lagged = replica.reader()
        assert lagged is not None
        print(f"read, replica: {_read_ms(lagged):.2f} ms")
        exchange.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
