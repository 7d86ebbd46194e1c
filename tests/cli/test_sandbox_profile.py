"""`--sandbox-profile`: every command's embedded sandbox starts with the profile asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import server as sandbox_server
from tests.cli.cli_support import EXAMPLES, make_invoke

COMMANDS = ("plan", "apply", "drift", "import", "validate", "watch")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_with_sandbox_takes_the_profile(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = make_invoke(capsys)(command, "--help")
    assert result.code == 0 and "--sandbox-profile [ideal|realistic]" in result.out


@pytest.mark.parametrize("chosen", [None, "realistic"])
def test_the_embedded_sandbox_serves_the_chosen_profile(
    chosen: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    started: list[str] = []
    real = sandbox_server.SandboxServer

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self.sandbox.control.profile)

    monkeypatch.setattr(sandbox_server, "SandboxServer", Recording)
    extra = [] if chosen is None else ["--sandbox-profile", chosen]
    result = make_invoke(capsys)(
        "plan", "--sandbox", *extra, "-f", str(EXAMPLES / "desired-state.yaml")
    )
    assert result.code == 0, result.err
    assert started == [chosen or "ideal"]


def test_an_unknown_profile_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = make_invoke(capsys)("plan", "--sandbox", "--sandbox-profile", "harsh", "-f", "x")
    assert result.code != 0 and "harsh" in result.err
