"""A rehearsal: the plan run on a copy of the live account before one real call is sent.

A plan is a prediction. The project owns an exchange emulator, so it can do better: copy the
live account (symbol specs, marks, the available balance, every position with its entry,
leverage, margin and TP/SL, every resting order) into an in-process sandbox under the
`realistic` profile (a book with depth, partial resting fills, stop slippage; no read lag by
default), plan there from what the copy shows, and run the real apply engine against it over
the real signed client. What comes back is what the exchange would do: end positions,
margin, liquidation prices, fills with their prices and fees, and every refusal with the
exchange's code.

Nothing here talks to the live exchange: the caller reads the live account once (plan's own
reads, plus the overview for the balance) and hands the copy in. Where the copy cannot be
exact, `Rehearsal.approximations` says so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from reconciler.apply.engine import run_apply
from reconciler.apply.report import ApplyReport
from reconciler.apply.settle import SettleConfig
from reconciler.defaults import DEFAULT_MAX_PASSES
from reconciler.errors import ReconcilerError
from reconciler.levret.client import LevretClient
from reconciler.levret.emulator import AccountCopy, copy_account
from reconciler.levret.reader import read_snapshot
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import Position
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot
from reconciler.plan import plan as make_plan
from reconciler.run.lock import account_lock

__all__ = [
    "APPROXIMATIONS",
    "Fill",
    "Refusal",
    "Rehearsal",
    "SymbolResult",
    "actual_fills",
    "comparison_lines",
    "rehearsal_data",
    "rehearse",
    "rehearse_account",
    "summary_lines",
]

APPROXIMATIONS = (
    "the book is the sandbox's synthetic depth around each copied mark, not the live book: "
    "slippage of a large market order is an estimate",
    "other traders are not copied: a resting order fills only when the mark reaches it",
    "fees use the sandbox's rates (maker 0.02 %, taker 0.05 %), not the account's tier",
    "the account's history (fills, ledger) is not copied; only its state is",
)


@dataclass(frozen=True)
class Fill:
    side: str
    size: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class Refusal:
    kind: str
    code: str | None
    detail: str


@dataclass(frozen=True)
class SymbolResult:
    """One symbol after the rehearsal: where it ended and what it took to get there."""

    symbol: str
    position: Position | None  # the copy's position at the end, if any
    fills: tuple[Fill, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def fees(self) -> Decimal:
        return sum((fill.fee for fill in self.fills), Decimal(0))

    @property
    def average_price(self) -> Decimal | None:
        size = sum((fill.size for fill in self.fills), Decimal(0))
        if not size:
            return None
        return sum((fill.size * fill.price for fill in self.fills), Decimal(0)) / size

    @property
    def liquidation_distance(self) -> Decimal | None:
        """Percent of the mark to the end position's liquidation price."""
        if self.position is None or self.position.liquidation_price is None:
            return None
        mark = self.position.mark_price
        price = self.position.liquidation_price
        moved = mark - price if self.position.side == "long" else price - mark
        return (moved / mark * 100).quantize(Decimal("0.01"))


@dataclass(frozen=True, repr=False)
class Rehearsal:
    plan: Plan  # the plan made on the copy (ids are the copy's)
    report: ApplyReport
    symbols: tuple[SymbolResult, ...]
    approximations: tuple[str, ...] = APPROXIMATIONS

    def __repr__(self) -> str:
        # Short on purpose: `asyncio.run` formats its main task, result included, when it
        # restores the SIGINT handler, and the full plan and report of a 100-symbol
        # rehearsal took tens of milliseconds to format, twice, for nobody.
        return (
            f"Rehearsal(converged={self.converged}, actions={len(self.plan.actions)}, "
            f"symbols={len(self.symbols)}, refusals={len(self.refusals)})"
        )

    @property
    def converged(self) -> bool:
        return self.report.converged and not self.plan.violations

    @property
    def refusals(self) -> tuple[tuple[str, Refusal], ...]:
        return tuple((s.symbol, r) for s in self.symbols for r in s.refusals)


async def read_live(settings: ClientSettings, desired: DesiredState) -> tuple[Snapshot, Decimal]:
    """What the copy needs from the live account: plan's reads, every mark, the balance.

    Read-only. Beyond plan's own reads: the mark of every symbol the file names or the
    account holds (plan reads a mark only where it needs one), and the overview for the
    available balance.
    """
    async with LevretClient(settings) as client:
        live = await read_snapshot(client, desired)
        wanted = (set(desired.symbols) | live.live_symbols()) & set(live.specs)
        marks = dict(live.marks)
        for symbol in sorted(s for s in wanted if live.mark(s) is None):
            marks[symbol] = (await client.market_stats(symbol)).mark_price
        overview = await client.account_overview()
    if overview.available_balance is None:
        raise ReconcilerError(
            "the account overview does not give the available balance a rehearsal starts from"
        )
    return live.model_copy(update={"marks": marks}), overview.available_balance


async def rehearse_account(settings: ClientSettings, desired: DesiredState) -> Rehearsal:
    """Read the live account (nothing else is sent to it) and rehearse the plan on a copy."""
    live, available = await read_live(settings, desired)
    return await rehearse(desired, live, available)


async def rehearse(
    desired: DesiredState,
    live: Snapshot,
    available: Decimal,
    *,
    profile: str = "realistic",
    read_lag_ms: int = 0,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Rehearsal:
    """Run the plan for `desired` on a copy of `live` and report what the copy went through."""
    with tempfile.TemporaryDirectory(prefix="reconciler-rehearsal-") as scratch:
        directory = Path(scratch)
        copy = copy_account(live, available, profile)
        await copy.set_read_lag(read_lag_ms)
        async with LevretClient(copy.client_settings(), transport=copy.transport) as client:
            planned = make_plan(desired, await read_snapshot(client, desired))
            planned = planned.model_copy(update={"created_at_ms": time.time_ns() // 1_000_000})
            lock = account_lock(
                None,
                base_url=f"rehearsal:{directory}",
                user_id=live.user_id,
                environ={"RECONCILER_STATE_DIR": str(directory)},
            )
            report = await run_apply(
                planned,
                client=client,
                desired=desired,
                read_snapshot=read_snapshot,
                state_dir=directory,
                max_passes=max_passes,
                parallelism=16,  # in-process: no budget to share, only the event loop
                settle_config=SettleConfig(visibility_timeout_s=5.0),
                lock=lock,
                durable_journal=False,  # a scratch journal of calls to a copy: see journal.py
            )
        return Rehearsal(
            plan=planned,
            report=report,
            symbols=_results(copy, planned, report),
        )


def _results(copy: AccountCopy, planned: Plan, report: ApplyReport) -> tuple[SymbolResult, ...]:
    symbols = sorted({action.symbol for action in planned.actions})
    positions = copy.positions()
    fills: dict[str, list[Fill]] = {}
    for trade in copy.fills():
        fee = trade.fee if trade.fee is not None else Decimal(0)
        fills.setdefault(trade.symbol, []).append(Fill(trade.side, trade.size, trade.price, fee))
    refusals: dict[str, list[Refusal]] = {}
    for result in report.results:
        if result.outcome == "rejected":
            refusals.setdefault(result.action.symbol, []).append(
                Refusal(result.action.kind, result.code, result.detail)
            )
    return tuple(
        SymbolResult(
            symbol,
            positions.get(symbol),
            tuple(fills.get(symbol, ())),
            tuple(refusals.get(symbol, ())),
        )
        for symbol in symbols
    )


def summary_lines(rehearsal: Rehearsal) -> Sequence[str]:
    """The rehearsal as a reviewer reads it: per symbol where it ended, what it paid."""
    verdict = "converged" if rehearsal.converged else "did NOT converge"
    lines = [f"Rehearsal on a copy of the account ({verdict}; nothing was sent to the exchange)"]
    for result in rehearsal.symbols:
        position = result.position
        if position is None:
            where = "flat"
        else:
            where = (
                f"{position.side} {position.size:f} at {position.leverage}x, "
                f"margin {position.margin:f}, liquidation {_text(position.liquidation_price)}"
            )
            if result.liquidation_distance is not None:
                where += f" ({result.liquidation_distance:f}% away)"
        lines.append(f"  {result.symbol}: {where}")
        if result.fills:
            average = result.average_price
            assert average is not None
            average = average.quantize(Decimal("0.0001"))
            count = len(result.fills)
            lines.append(f"    {count} fill(s), average {average:f}, fees {result.fees:f}")
        for refusal in result.refusals:
            lines.append(f"    refused: {refusal.kind} [{refusal.code}] {refusal.detail}")
    lines.append("  approximated:")
    lines.extend(f"    - {text}" for text in rehearsal.approximations)
    return lines


async def actual_fills(
    settings: ClientSettings, symbols: Sequence[str], since_ms: int
) -> dict[str, tuple[Fill, ...]]:
    """The live account's fills since `since_ms` on `symbols`: what the real apply paid."""
    fills: dict[str, list[Fill]] = {symbol: [] for symbol in symbols}
    async with LevretClient(settings) as client:
        async for trade in client.iter_user_trades(start_time=since_ms):
            if trade.symbol in fills:
                fee = trade.fee if trade.fee is not None else Decimal(0)  # not every venue says
                fills[trade.symbol].append(Fill(trade.side, trade.size, trade.price, fee))
    return {symbol: tuple(items) for symbol, items in fills.items()}


def comparison_lines(rehearsal: Rehearsal, actual: Mapping[str, Sequence[Fill]]) -> list[str]:
    """Predicted against actual, per symbol: size filled, average price, fees."""
    lines = ["Rehearsal against the real apply (predicted -> actual):"]
    for result in rehearsal.symbols:
        real = SymbolResult(result.symbol, None, tuple(actual.get(result.symbol, ())))
        lines.append(
            f"  {result.symbol}: filled {_filled(result):f} -> {_filled(real):f}, average "
            f"{_price(result.average_price)} -> {_price(real.average_price)}, fees "
            f"{result.fees:f} -> {real.fees:f}"
        )
    return lines


def _filled(result: SymbolResult) -> Decimal:
    return sum((fill.size for fill in result.fills), Decimal(0))


def _price(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(Decimal('0.0001')):f}"


def rehearsal_data(rehearsal: Rehearsal) -> dict[str, Any]:
    """The rehearsal as JSON-ready data (`--format json`)."""
    return {
        "converged": rehearsal.converged,
        "summary": rehearsal.report.summary(),
        "violations": list(rehearsal.plan.violations),
        "symbols": [
            {
                "symbol": result.symbol,
                "position": (
                    result.position.model_dump(mode="python")
                    if result.position is not None
                    else None
                ),
                "liquidation_distance": result.liquidation_distance,
                "fills": [vars(fill) for fill in result.fills],
                "average_price": result.average_price,
                "fees": result.fees,
                "refusals": [vars(refusal) for refusal in result.refusals],
            }
            for result in rehearsal.symbols
        ],
        "approximations": list(rehearsal.approximations),
    }


def _text(value: Any) -> str:
    return "none" if value is None else f"{Decimal(value):f}"
