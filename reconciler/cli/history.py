"""`reconciler history`: the past applies in the journal directory; `history show ID`: one.

An auditor's first question after a run (or a killed one) is what happened, and the answer
is in the journal; this makes it a command instead of `jq` over JSONL. Reads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from reconciler.apply.journal import read_journal
from reconciler.cli.options import dump_json
from reconciler.cli.session import Session, pass_session
from reconciler.jsonnum import dumps
from reconciler.run.connection import STATE_DIR
from reconciler.run.history import JournalSummary, calls_of, find_journal, list_journals, summarize

DEFAULT_JOURNAL_DIR = STATE_DIR / "journal"
_DIRECTORY_META = "reconciler.history.directory"

_directory_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_JOURNAL_DIR,
    show_default=True,
    help="Where apply wrote its journals.",
)
_format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _listing(summaries: list[JournalSummary]) -> str:
    if not summaries:
        return "No journals: no apply has run here yet."
    rows = [("ID", "STARTED", "ACCOUNT", "CALLS", "RESULT")]
    rows.extend(
        (item.id, item.started, item.account, str(item.calls), item.result) for item in summaries
    )
    return "\n".join(_table(rows))


@click.group("history", invoke_without_command=True)
@_directory_option
@_format_option
@click.pass_context
@pass_session
def history(session: Session, context: click.Context, directory: Path, output_format: str) -> None:
    """List past applies (time, account, calls sent, result) from their journals."""
    context.meta[_DIRECTORY_META] = directory  # for `history show`
    if context.invoked_subcommand is not None:
        return
    summaries = list_journals(directory)
    console = session.console
    if output_format == "json":
        console.data(dump_json({"journals": [item.data() for item in summaries]}))
    else:
        console.data(_listing(summaries))


def _show_text(summary: JournalSummary, calls: list[dict[str, Any]]) -> str:
    lines = [
        f"{summary.id}: account {summary.account}, started {summary.started}, "
        f"{summary.calls} call(s) sent, {summary.result}"
        + (f" (exit {summary.exit_code})" if summary.exit_code is not None else ""),
        f"journal: {summary.path}",
    ]
    if calls:
        rows = [("PASS", "#", "SYMBOL", "ACTION", "PHASE", "OUTCOME", "CODE", "DETAIL")]
        rows.extend(
            (
                str(call["pass"]),
                str(int(call["index"]) + 1) if isinstance(call["index"], int) else "-",
                str(call["symbol"]),
                str(call["kind"]),
                str(call["phase"] or "-"),
                str(call["outcome"] or "-"),
                str(call["code"] or ""),
                str(call["detail"] or ""),
            )
            for call in calls
        )
        lines.append("")
        lines.extend(_table(rows))
    return "\n".join(lines)


@history.command("show")
@click.argument("journal_id", metavar="ID")
@_format_option
@click.pass_context
@pass_session
def show(session: Session, context: click.Context, journal_id: str, output_format: str) -> None:
    """Render one past apply: every call and its final outcome."""
    directory: Path = context.meta[_DIRECTORY_META]
    path = find_journal(directory, journal_id)
    records = read_journal(path)
    summary = summarize(path)
    calls = calls_of(records)
    console = session.console
    if output_format == "json":
        document = {**summary.data(), "actions": calls, "records": records}
        console.data(dumps(document).decode("utf-8"))
    else:
        console.data(_show_text(summary, calls))
