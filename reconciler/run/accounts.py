"""Many accounts in one run: `-f` with several files or a directory, for plan, apply and drift.

Each desired-state file is one account; it names the environment variables holding its key
(`account.credentials_env`), so one CI job can hold several accounts' secrets without any
file containing one. The run is all-or-nothing only where that is safe:

- every file is loaded and validated first; one bad file stops the run before anything is
  read or sent (the same promise as a single file);
- two files that resolve to the same account are refused up front: their applies would
  fight over the same positions;
- after that the accounts are independent: they are read and planned concurrently, a
  failure in one (missing credentials, network, policy, stale plan, lock) is reported in
  its own section and does not stop the others, and the run exits with the most severe code.

The run's code is the most severe of the accounts' codes, in the one order
`reconciler.exitcodes.SEVERITY` states (and docs/gitops.md explains).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from reconciler.apply.report import ApplyReport
from reconciler.errors import PreconditionFailed, ReconcilerError, SpecError
from reconciler.exitcodes import ExitCode
from reconciler.jsonnum import dumps
from reconciler.levret.requests import calls_for
from reconciler.levret.settings import ClientSettings
from reconciler.model.desired import DesiredState, load
from reconciler.model.plan import Plan
from reconciler.render.plan import MARKDOWN_LIMIT, load_plan
from reconciler.render.progress import PlainProgress
from reconciler.run.connection import Endpoint, client_settings
from reconciler.run.workflow import ApplyOptions, apply_account, narrow, plan_account

__all__ = [
    "AccountFile",
    "Outcome",
    "apply_all",
    "changes_remaining",
    "declined",
    "expand_files",
    "group_json",
    "header",
    "is_multi",
    "load_accounts",
    "load_saved_plans",
    "needs_apply",
    "plan_all",
    "plan_file_name",
    "render_group",
    "single_account",
    "with_saved_plans",
]

YAML_SUFFIXES = (".yaml", ".yml")


def is_multi(paths: Sequence[Path]) -> bool:
    """Several `-f` values, or a directory: the grouped, per-account behaviour."""
    return len(paths) > 1 or any(path.is_dir() for path in paths)


def expand_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, directories as their `*.yaml`/`*.yml` files (sorted, not recursive)."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                item for item in path.iterdir() if item.is_file() and item.suffix in YAML_SUFFIXES
            )
            if not found:
                problems.append(f"{path}: no *.yaml or *.yml file in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    if problems:
        raise SpecError(problems)
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


@dataclass(frozen=True)
class AccountFile:
    """One desired-state file of a multi-account run."""

    path: Path
    desired: DesiredState

    @property
    def label(self) -> str:
        return str(self.path)


def single_account(path: Path, targets: Sequence[str] = ()) -> AccountFile:
    """One `-f FILE`, as a list of one would hold it: loaded, then narrowed to `targets`.

    Not `load_accounts([path])`: one file keeps its own messages (`--target X: not a symbol
    of this file`, the loader's own error for a missing file).
    """
    return AccountFile(path, narrow(load(path), targets))


def plan_file_name(account: AccountFile) -> str:
    """The saved plan's name for this file in a plan directory: `<file stem>.json`."""
    return account.path.stem + ".json"


def load_accounts(paths: Sequence[Path], targets: Sequence[str] = ()) -> list[AccountFile]:
    """Load and validate every file; all problems of all files in one `SpecError`.

    With `targets`, each file keeps the targets it has and a file with none is left out; a
    target that no file has is an error (as `--target` is for one file).
    """
    problems: list[str] = []
    loaded: list[AccountFile] = []
    for path in expand_files(paths):
        try:
            loaded.append(AccountFile(path, load(path)))
        except SpecError as error:
            problems.extend(error.problems)
    if problems:
        raise SpecError(problems)
    if targets:
        known = {symbol for account in loaded for symbol in account.desired.symbols}
        unknown = sorted(set(targets) - known)
        if unknown:
            raise SpecError([f"--target {symbol}: not a symbol of any file" for symbol in unknown])
        kept = []
        for account in loaded:
            mine = [symbol for symbol in targets if symbol in account.desired.symbols]
            if mine:
                kept.append(replace(account, desired=narrow(account.desired, mine)))
        loaded = kept
    names = [plan_file_name(account) for account in loaded]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise SpecError(
            [f"two files would share the saved-plan name {name}; rename one" for name in clashes]
        )
    return loaded


@dataclass(frozen=True)
class Outcome:
    """What happened to one account; `code` is its exit code under the project's contract."""

    account: AccountFile
    code: ExitCode = ExitCode.OK
    settings: ClientSettings | None = None
    plan: Plan | None = None
    error: str | None = None
    report: ApplyReport | None = None
    saved: bool = False  # the plan came from a file: a proposal, planned again before it runs
    cause: ReconcilerError | None = field(default=None, compare=False, repr=False)
    """The error behind `error`, kept so a run of one account can end with it as raised."""

    @property
    def user_id(self) -> str:
        if self.plan is not None:
            return self.plan.user_id
        if self.settings is not None:
            return self.settings.user_id
        return self.account.desired.account.user_id or "?"

    def failed(self, error: ReconcilerError) -> Outcome:
        return replace(self, code=error.exit_code, error=str(error), cause=error)

    def raise_failure(self) -> None:
        """Raise the error this account failed with, as it was raised (nothing if none).

        A run of one account ends the way a plain command does: its error reaches the CLI's
        one handler and prints as `Error: ...`, instead of in a section of its own.
        """
        if self.cause is not None:
            raise self.cause


def _resolve(accounts: Sequence[AccountFile], where: Endpoint) -> list[Outcome]:
    """Credentials per account; refuse two files on one account before anything is sent."""
    outcomes: list[Outcome] = []
    for account in accounts:
        try:
            outcomes.append(Outcome(account, settings=client_settings(where, account.desired)))
        except ReconcilerError as error:
            outcomes.append(Outcome(account).failed(error))
    seen: dict[tuple[str, str], str] = {}
    for outcome in outcomes:
        if outcome.settings is None:
            continue
        key = (outcome.settings.base_url, outcome.settings.user_id)
        if key in seen:
            raise ReconcilerError(
                f"{seen[key]} and {outcome.account.label} both describe account "
                f"{key[1]}: one file per account"
            )
        seen[key] = outcome.account.label
    return outcomes


async def _each(
    outcomes: Sequence[Outcome], work: Callable[[Outcome], Awaitable[Outcome]]
) -> list[Outcome]:
    """Run `work` concurrently on the outcomes still going; a `ReconcilerError` stays local."""

    async def guarded(outcome: Outcome) -> Outcome:
        if outcome.error is not None:
            return outcome
        try:
            return await work(outcome)
        except ReconcilerError as error:
            return outcome.failed(error)

    return list(await asyncio.gather(*(guarded(outcome) for outcome in outcomes)))


async def plan_all(
    accounts: Sequence[AccountFile],
    where: Endpoint,
    *,
    now_ms: int | None = None,
    allow_flatten: bool = False,
) -> list[Outcome]:
    """Read and plan every account concurrently. Codes: 4 for violations, 1 for errors."""

    async def one(outcome: Outcome) -> Outcome:
        assert outcome.settings is not None
        planned = await plan_account(
            outcome.settings, outcome.account.desired, now_ms=now_ms, allow_flatten=allow_flatten
        )
        return replace(outcome, plan=planned, code=_planned_code(planned))

    return await _each(_resolve(accounts, where), one)


def _planned_code(planned: Plan) -> ExitCode:
    """A plan that breaks the policy is exit 4 before anything is sent; any other is 0."""
    return ExitCode.POLICY_VIOLATION if planned.violations else ExitCode.OK


def load_saved_plans(plan_dir: Path, accounts: Sequence[AccountFile]) -> dict[str, Plan]:
    """The saved plan of each account from `plan_dir/<stem>.json` (see `plan_file_name`)."""
    plans: dict[str, Plan] = {}
    problems: list[str] = []
    for account in accounts:
        path = plan_dir / plan_file_name(account)
        try:
            plans[account.label] = load_plan(path.read_bytes(), calls_for=calls_for)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: not a saved plan for {account.label}: {error}")
    if problems:
        raise ReconcilerError("\n".join(problems))
    return plans


def with_saved_plans(
    accounts: Sequence[AccountFile], where: Endpoint, plans: Mapping[str, Plan]
) -> list[Outcome]:
    """Outcomes carrying the saved plans instead of fresh ones (apply of a plan directory)."""
    outcomes = []
    for outcome in _resolve(accounts, where):
        planned = plans[outcome.account.label]
        if outcome.settings is not None and planned.user_id != outcome.settings.user_id:
            outcome = outcome.failed(
                PreconditionFailed(
                    f"the saved plan is for account {planned.user_id}, "
                    f"{outcome.account.label} for {outcome.settings.user_id}: nothing was sent"
                )
            )
        elif outcome.error is None:
            outcome = replace(outcome, plan=planned, code=_planned_code(planned), saved=True)
        outcomes.append(outcome)
    return outcomes


class _Prefixed(io.StringIO):
    """A stream that writes each line to `target` with the account's name in front."""

    def __init__(self, target: TextIO, prefix: str) -> None:
        super().__init__()
        self._target = target
        self._prefix = prefix

    def write(self, text: str) -> int:
        for line in text.splitlines(keepends=True):
            self._target.write(self._prefix + line)
        return len(text)

    def flush(self) -> None:
        self._target.flush()


def needs_apply(outcome: Outcome) -> bool:
    """Planned without error or violation, and with calls to make."""
    planned = outcome.plan
    return (
        outcome.code == ExitCode.OK
        and outcome.error is None
        and planned is not None
        and bool(planned.actions)
    )


def changes_remaining(outcome: Outcome) -> Outcome:
    """Exit 2 for an account that otherwise succeeded but left infeasible symbols alone."""
    if outcome.code == ExitCode.OK and outcome.plan is not None and outcome.plan.infeasible:
        return replace(outcome, code=ExitCode.CHANGES)
    return outcome


def declined(outcome: Outcome) -> Outcome:
    """Exit 7 for an account whose operator did not answer `yes`: nothing is sent to it."""
    error = "declined at the prompt: nothing was sent"
    return replace(outcome, code=ExitCode.DECLINED, error=error)


async def apply_all(
    outcomes: Sequence[Outcome], *, options: ApplyOptions, log: TextIO
) -> list[Outcome]:
    """Apply every account that `needs_apply`, concurrently; progress lines are prefixed.

    Prompts (if any) happen before this, one account at a time, so no question is asked
    while another account's calls are in flight.
    """

    async def one(outcome: Outcome) -> Outcome:
        if not needs_apply(outcome):
            return outcome
        assert outcome.settings is not None and outcome.plan is not None
        progress = PlainProgress(_Prefixed(log, f"[{outcome.account.label}] "))
        report = await apply_account(
            outcome.settings,
            outcome.account.desired,
            outcome.plan,
            progress=progress,
            options=options,
            saved=outcome.saved,
        )
        return replace(outcome, report=report, code=report.exit_code)

    return await _each(outcomes, one)


def header(outcome: Outcome) -> str:
    """The section title of one account: its file, its user and its exit code."""
    return f"{outcome.account.label} (account {outcome.user_id}, exit {outcome.code})"


def render_group(
    outcomes: Sequence[Outcome], body: Callable[[Outcome], str], output_format: str
) -> str:
    """Per-account bodies under one header each; markdown stays under GitHub's limit.

    `body` renders what the account produced; an account's error is added under it here, so
    every command shows failures the same way, in the account's own section.
    """

    def full(outcome: Outcome) -> str:
        text = body(outcome).rstrip()
        if outcome.error is not None:
            prefix = "**Error:** " if output_format == "markdown" else "Error: "
            text = (text + "\n\n" if text else "") + prefix + outcome.error
        return text

    sections = [(header(outcome), full(outcome)) for outcome in outcomes]
    if output_format == "markdown":
        return _join_markdown(outcomes, sections)
    rule = "=" * 8
    return "\n".join(f"{rule} {title} {rule}\n{text}\n" for title, text in sections)


def group_json(outcomes: Sequence[Outcome], data: Callable[[Outcome], Any], code: ExitCode) -> str:
    """`{"exit_code": N, "accounts": [{"file", "user_id", "exit_code", "error", ...}]}`."""
    document = {
        "exit_code": code,
        "accounts": [
            {
                "file": outcome.account.label,
                "user_id": outcome.user_id,
                "exit_code": outcome.code,
                "error": outcome.error,
                **data(outcome),
            }
            for outcome in outcomes
        ],
    }
    return dumps(document).decode("utf-8") + "\n"


def _join_markdown(outcomes: Sequence[Outcome], sections: Sequence[tuple[str, str]]) -> str:
    table = ["| file | account | exit |", "| --- | --- | --- |"]
    table.extend(
        f"| `{outcome.account.label}` | `{outcome.user_id}` | {outcome.code} |"
        for outcome in outcomes
    )
    head = "\n".join(table) + "\n"
    parts = [f"## {title}\n\n{text}\n" for title, text in sections]
    text = "\n".join([head, *parts])
    if len(text) < MARKDOWN_LIMIT:
        return text
    share = (MARKDOWN_LIMIT - len(head) - 2_000) // max(len(parts), 1)
    note = "\n\n... (cut to fit one comment; the JSON output has everything)\n"
    cut = []
    for part in parts:
        if len(part) > share:
            end = part.rfind("\n", 0, share - len(note))
            part = part[: end if end > 0 else share - len(note)] + note
        cut.append(part)
    return "\n".join([head, *cut])
