"""Past applies, read back from their journals: what `reconciler history` lists and shows.

Each apply leaves one journal (see `reconciler.apply.journal`); the journal alone answers "what
was sent, and what did the exchange do with it?". This module only reads: a summary per
journal (when, which account, how many calls were sent, how it ended) and, for one journal,
each call with its final outcome (a settlement overrides the result it settled). A journal
without an `end` record is reported as such: the run was killed, not finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.apply.journal import read_journal
from reconciler.errors import ReconcilerError

__all__ = [
    "JournalSummary",
    "calls_of",
    "find_journal",
    "list_journals",
    "summarize",
]

JOURNAL_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class JournalSummary:
    """One past apply: its id (the journal's file name without `.jsonl`) and how it went."""

    id: str
    path: Path
    started_ms: int | None
    account: str
    calls: int
    result: str
    exit_code: int | None

    @property
    def started(self) -> str:
        if self.started_ms is None:
            return "-"
        stamp = datetime.fromtimestamp(self.started_ms / 1000, tz=UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "started": self.started,
            "started_ms": self.started_ms,
            "account": self.account,
            "calls": self.calls,
            "result": self.result,
            "exit_code": self.exit_code,
        }


def _ending(records: list[dict[str, Any]]) -> tuple[str, int | None]:
    end = next((record for record in reversed(records) if record.get("type") == "end"), None)
    if end is None:
        return "no end record (killed?)", None
    code = end.get("exit_code")
    exit_code = code if isinstance(code, int) else None
    if end.get("interrupted"):
        return "interrupted", exit_code
    if end.get("converged"):
        return "converged", exit_code
    failed = any(
        record.get("type") == "precondition" and record.get("ok") is False for record in records
    )
    return ("precondition failed" if failed else "not converged"), exit_code


def summarize(path: Path) -> JournalSummary:
    records = read_journal(path)
    first = records[0] if records else {}
    started = first.get("time_ms")
    result, exit_code = _ending(records)
    return JournalSummary(
        id=path.name.removesuffix(JOURNAL_SUFFIX),
        path=path,
        started_ms=started if isinstance(started, int) else None,
        account=str(first.get("user_id", "-")),
        calls=sum(1 for record in records if record.get("type") == "intent"),
        result=result,
        exit_code=exit_code,
    )


def list_journals(directory: Path) -> list[JournalSummary]:
    """Every journal in `directory`, oldest first (their names sort by start time)."""
    if not directory.is_dir():
        return []
    return [summarize(path) for path in sorted(directory.glob(f"*{JOURNAL_SUFFIX}"))]


def find_journal(directory: Path, journal_id: str) -> Path:
    """The journal named by `journal_id`: its id, its file name, a unique id prefix or a path."""
    given = Path(journal_id)
    if given.suffix == JOURNAL_SUFFIX and given.is_file():
        return given
    candidates = (
        sorted(directory.glob(f"{journal_id}*{JOURNAL_SUFFIX}")) if directory.is_dir() else []
    )
    exact = [path for path in candidates if path.name in (journal_id, journal_id + JOURNAL_SUFFIX)]
    if exact:
        return exact[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ReconcilerError(
            f"no journal {journal_id!r} in {directory} (see `reconciler history`)"
        )
    raise ReconcilerError(
        f"{journal_id!r} matches {len(candidates)} journals in {directory}; give more of the id"
    )


def calls_of(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each planned call of each pass with its final outcome, in journal order."""
    calls: dict[tuple[Any, Any], dict[str, Any]] = {}
    for record in records:
        kind = record.get("type")
        if kind not in ("intent", "result", "settlement"):
            continue
        key = (record.get("pass_number"), record.get("index"))
        call = calls.setdefault(
            key,
            {
                "pass": record.get("pass_number"),
                "index": record.get("index"),
                "symbol": record.get("symbol"),
                "kind": record.get("kind"),
                "phase": None,
                "request": None,
                "outcome": None,
                "status": None,
                "code": None,
                "detail": "",
                "settled_by_reads": None,
            },
        )
        if kind == "intent":
            call["phase"] = record.get("phase")
            call["request"] = record.get("request")
        elif kind == "result":
            call.update(
                outcome=record.get("outcome"),
                status=record.get("status"),
                code=record.get("code"),
                detail=record.get("detail", ""),
            )
        else:
            call.update(outcome=record.get("outcome"), settled_by_reads=record.get("reads"))
    return list(calls.values())
