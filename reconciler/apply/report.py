"""What an apply did: each call's outcome per pass, and the report its exit code comes from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.apply.journal import Outcome
from reconciler.apply.settle import Settlement
from reconciler.errors import PartialApply
from reconciler.exitcodes import ExitCode
from reconciler.model.plan import Action, Plan

__all__ = ["ActionResult", "ApplyFailed", "ApplyInterrupted", "ApplyReport", "PassReport"]


@dataclass(frozen=True)
class ActionResult:
    """What happened to one planned call in one pass."""

    pass_number: int
    index: int
    action: Action
    outcome: Outcome
    detail: str = ""
    path: str | None = None  # as sent, placeholder resolved; None when not sent
    status: int | None = None
    code: str | None = None
    latency_ms: float | None = None
    settlement: Settlement | None = None


@dataclass(frozen=True)
class PassReport:
    number: int
    plan: Plan
    results: tuple[ActionResult, ...]


@dataclass(frozen=True)
class ApplyReport:
    """The whole apply: every pass's results and whether the account now matches the spec."""

    user_id: str
    passes: tuple[PassReport, ...]
    converged: bool
    interrupted: bool = False
    remaining: tuple[Action, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    journal_path: Path | None = None
    rate_limited: int = 0  # 429s the exchange answered during the run (each was resent)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.converged and not self.interrupted else ExitCode.PARTIAL_APPLY

    @property
    def results(self) -> tuple[ActionResult, ...]:
        return tuple(result for report in self.passes for result in report.results)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return counts

    def summary(self) -> str:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts().items()))
        passes = f"{len(self.passes)} pass{'es' if len(self.passes) != 1 else ''}"
        if self.interrupted:
            head = "interrupted"
        elif self.converged:
            head = "converged"
        else:
            head = f"not converged ({len(self.remaining)} action(s) still planned)"
        limited = (
            f"; {self.rate_limited} rate-limited (429) and resent" if self.rate_limited else ""
        )
        return f"{head} after {passes}" + (f": {counts}" if counts else "") + limited

    def rows(self) -> list[tuple[str, ...]]:
        """The table of what happened, one row per planned call per pass."""
        rows: list[tuple[str, ...]] = []
        for result in self.results:
            code = result.code or ""
            rows.append(
                (
                    str(result.pass_number),
                    str(result.index + 1),
                    result.action.symbol,
                    result.action.kind,
                    result.action.phase.name.lower(),
                    result.outcome,
                    code,
                    result.detail,
                )
            )
        return rows

    def table(self) -> str:
        """`rows()` as aligned plain text, followed by what is left and why."""
        header = ("pass", "#", "symbol", "action", "phase", "outcome", "code", "detail")
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[-1]
            for row in rows
        ]
        for action in self.remaining:
            lines.append(f"still planned: {action.symbol} {action.kind} ({action.reason})")
        for symbol, why in sorted(self.excluded.items()):
            lines.append(f"left alone: {symbol}: {why}")
        lines.extend(f"problem: {problem}" for problem in self.problems)
        if self.journal_path is not None:
            lines.append(f"journal: {self.journal_path}")
        return "\n".join(line.rstrip() for line in lines)

    def raise_for_status(self) -> None:
        """Raise `ApplyFailed` (exit 5) unless the account converged."""
        if self.exit_code != ExitCode.OK:
            raise ApplyFailed(self)


class ApplyFailed(PartialApply):
    """Some calls failed or the account did not converge; `report` says which and why."""

    def __init__(self, report: ApplyReport) -> None:
        self.report = report
        super().__init__(f"{report.summary()}\n{report.table()}")


class ApplyInterrupted(ApplyFailed):
    """Apply was cancelled (Ctrl-C); calls in flight finished and were journaled."""
