"""One console per run: the root group builds it from the global flags; every command uses it."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import click
import pytest

from reconciler.cli.console import Console
from reconciler.cli.root import cli as root_group
from reconciler.cli.session import Session, pass_session
from tests.cli.cli_support import Invoke, make_invoke, point_at
from tests.cli.test_cli_flow import DESIRED

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler" / "cli"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_command_builds_a_console_of_its_own() -> None:
    """Only the root group builds one, so a global flag cannot miss a command."""
    building = sorted(
        path.name
        for path in PACKAGE.glob("*.py")
        if re.search(r"\bConsole(\.build)?\(", path.read_text()) and path.name != "root.py"
    )
    assert building == []


@pytest.mark.parametrize(
    ("flags", "environ", "tty", "color"),
    [
        ({}, {}, False, False),  # a pipe: plain
        ({}, {}, True, True),  # a terminal: colour
        ({}, {"FORCE_COLOR": "1"}, False, True),
        ({"no_color": True}, {"FORCE_COLOR": "1"}, True, False),  # no colour always wins
        ({}, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
    ],
)
def test_colour_is_decided_once_from_flags_environment_and_stdout(
    flags: dict[str, Any], environ: dict[str, str], tty: bool, color: bool
) -> None:
    out = Terminal() if tty else io.StringIO()
    assert Console.build(environ=environ, out=out, err=io.StringIO(), **flags).color is color


def test_a_progress_bar_only_on_a_terminal_stderr_outside_ci() -> None:
    def interactive(err: io.StringIO, environ: dict[str, str]) -> bool:
        return Console.build(environ=environ, out=io.StringIO(), err=err).interactive

    assert interactive(Terminal(), {})
    assert not interactive(io.StringIO(), {})
    assert not interactive(Terminal(), {"CI": "true"})


def test_quiet_drops_notes_and_progress_but_never_data_or_errors() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console.build(quiet=True, verbosity=2, environ={}, out=out, err=err)
    console.note("a note")
    console.detail("a detail")
    console.notes.write("a progress line\n")
    console.data("the result")
    console.error("an error")
    assert (out.getvalue(), err.getvalue()) == ("the result\n", "an error\n")


def test_detail_needs_verbose() -> None:
    err = io.StringIO()
    Console.build(environ={}, out=io.StringIO(), err=err).detail("hidden")
    Console.build(verbosity=1, environ={}, out=io.StringIO(), err=err).detail("shown")
    assert err.getvalue() == "shown\n"


def test_the_root_group_hands_its_flags_to_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real root callback and `pass_session`, with a probe command in a copy of the group."""
    reconciler_logger = logging.getLogger("reconciler")
    monkeypatch.setattr(reconciler_logger, "level", reconciler_logger.level)  # -vv raises it
    monkeypatch.setenv("FORCE_COLOR", "1")
    seen: list[Session] = []

    @click.command("probe")
    @pass_session
    def probe(session: Session) -> None:
        seen.append(session)

    group = click.Group("reconciler", params=root_group.params, callback=root_group.callback)
    group.add_command(probe)
    group.main(["-vv", "-q", "--no-color", "probe"], standalone_mode=False)
    (session,) = seen
    assert session.verbosity == 2
    assert session.console.quiet and not session.console.color


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_quiet_reaches_every_command_that_notes(cli) -> None:  # type: ignore[no-untyped-def]
    """`-q` silences apply's progress lines too, and validate's and import's notes."""
    loud = cli("validate", "--offline", "desired.yaml")
    assert loud.code == 0 and "valid" in loud.err
    assert cli("-q", "validate", "--offline", "desired.yaml").err == ""
    assert cli("-q", "import", "--user-id", "demo", "-o", "imported.yaml").err == ""
    assert Path("imported.yaml").read_text().startswith("# Written by `reconciler import`")
    applied = cli("-q", "apply", "-f", "desired.yaml", "--auto-approve")
    assert applied.code == 0
    assert applied.err == ""  # calls were sent: no progress line, no note
    assert "Plan for demo" in applied.out  # the plan is the result: still shown
