"""What a new user takes for granted of `apply`, end to end against a real sandbox: no prompt
without a terminal, private journals that name phases, `LEVRET_BASE_URL` from the
credentials file, and `python -m reconciler`."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import Invoke, make_invoke, point_at, writes
from tests.cli.test_cli_flow import DESIRED


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_no_terminal_and_no_auto_approve_is_an_error_not_a_decline(  # type: ignore[no-untyped-def]
    cli, sandbox, monkeypatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # a pipe, even one saying yes
    piped = cli("apply", "-f", "desired.yaml")
    assert piped.code == 1, piped.err
    assert "confirmation needs a terminal; use --auto-approve" in piped.err
    assert "Enter a value" not in piped.err
    assert writes(sandbox) == []


def test_no_input_refuses_even_on_a_terminal(cli, sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.cli.cli_support import TerminalInput

    monkeypatch.setattr("sys.stdin", TerminalInput("yes\n"))
    refused = cli("apply", "-f", "desired.yaml", "--no-input")
    assert refused.code == 1
    assert "confirmation needs a terminal; use --auto-approve" in refused.err
    assert writes(sandbox) == []


def test_journal_is_private_and_names_phases_like_the_plan(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert applied.code == 0, applied.err
    (journal,) = Path(".reconciler/journal").glob("*.jsonl")
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    phases = {
        action["phase"]
        for record in records
        if record["type"] in ("start", "plan")
        for action in record["plan"]["actions"]
    }
    phases |= {record["phase"] for record in records if record["type"] == "intent"}
    assert phases and all(isinstance(phase, str) for phase in phases), phases
    assert "cancel_orders" in phases


def test_base_url_from_the_credentials_file_is_used_and_plain_http_refused(  # type: ignore[no-untyped-def]
    cli, sandbox, monkeypatch, tmp_path
) -> None:
    monkeypatch.delenv("LEVRET_BASE_URL")
    credentials = tmp_path / "levret.env"
    credentials.write_text(f"LEVRET_BASE_URL={sandbox.api_url}\n")
    credentials.chmod(0o600)
    monkeypatch.setenv("LEVRET_CREDENTIALS_FILE", str(credentials))
    sandbox.clear_requests()
    planned = cli("plan", "-f", "desired.yaml")
    assert planned.code == 0, planned.err
    assert sandbox.requests(), "the plan's reads went to the file's URL"

    credentials.write_text("LEVRET_BASE_URL=http://staging.example.com/api/v1\n")
    refused = cli("plan", "-f", "desired.yaml")
    assert refused.code == 1
    assert "plain http:// is refused" in refused.err

    monkeypatch.setenv("LEVRET_BASE_URL", sandbox.api_url)  # the environment wins
    assert cli("plan", "-f", "desired.yaml").code == 0


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reconciler, version ")


def test_every_documented_variable_may_come_from_the_credentials_file(  # type: ignore[no-untyped-def]
    cli, sandbox, monkeypatch, tmp_path
) -> None:
    for name in ("LEVRET_API_KEY_ID", "LEVRET_API_KEY_SECRET", "LEVRET_BASE_URL"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)
    monkeypatch.delenv("RECONCILER_LOCK_DSN", raising=False)
    state = tmp_path / "state-from-file"
    credentials = tmp_path / "levret.env"
    credentials.write_text(
        "LEVRET_API_KEY_ID=demo-key\nLEVRET_API_KEY_SECRET=demo-secret\n"
        f"LEVRET_BASE_URL={sandbox.api_url}\nLEVRET_USER_ID=demo\n"
        f"RECONCILER_STATE_DIR={state}\n"
    )
    credentials.chmod(0o600)
    monkeypatch.setenv("LEVRET_CREDENTIALS_FILE", str(credentials))
    applied = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert applied.code == 0, applied.err
    assert list((state / "locks").glob("*.lock")), "the lock lives where the file says"
    assert writes(sandbox)


def test_quiet_keeps_the_question_that_guards_sending(cli, sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`-q` drops notes, never the question before money moves: a bare "Enter a value"
    would not say how many calls, on which account (even with the JSON plan held back)."""
    from tests.cli.cli_support import TerminalInput

    monkeypatch.setattr("sys.stdin", TerminalInput("no\n"))
    declined = cli("-q", "apply", "-f", "desired.yaml", "--format", "json")
    assert declined.code == 7, declined.err
    assert "Do you want to make these 4 call(s) on account demo?" in declined.err
    assert writes(sandbox) == []


def test_quiet_keeps_what_a_partial_apply_could_not_do(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A partial apply is an error: under `-q` stderr still names the symbols and calls."""
    sandbox.set_faults({"read_lag_ms": 3_000})
    applied = cli(
        "-q", "apply", "-f", "desired.yaml", "--auto-approve", "--visibility-timeout", "500ms"
    )
    assert applied.code == 5, applied.err
    assert "not visible after 0.5 s" in applied.err and "BTC_USDT" in applied.err
