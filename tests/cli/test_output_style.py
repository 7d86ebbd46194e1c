"""The global output flags: `-q/--quiet`, `--no-color`, `FORCE_COLOR`, and shell completion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.root import run
from tests.cli.cli_support import Invoke, make_invoke, point_at
from tests.cli.test_cli_flow import DESIRED

ESCAPE = "\x1b["


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_quiet_leaves_only_results_and_errors(cli) -> None:  # type: ignore[no-untyped-def]
    loud = cli("apply", "-f", "desired.yaml", "--auto-approve")
    assert loud.code == 0 and "Apply complete" in loud.err
    quiet = cli("-q", "apply", "-f", "desired.yaml", "--auto-approve")
    assert quiet.code == 0
    assert quiet.err == ""
    assert "No changes" not in quiet.err
    failed = cli("--quiet", "plan", "-f", "missing.yaml")
    assert failed.code == 1 and "missing.yaml" in failed.err  # errors are never silenced


def test_force_color_colours_a_pipe_and_no_color_wins(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert ESCAPE not in cli("plan", "-f", "desired.yaml").out  # a pipe: plain by default
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert ESCAPE in cli("plan", "-f", "desired.yaml").out
    assert ESCAPE not in cli("--no-color", "plan", "-f", "desired.yaml").out
    monkeypatch.setenv("NO_COLOR", "1")
    assert ESCAPE not in cli("plan", "-f", "desired.yaml").out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script_as_the_readme_says(
    shell: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"_RECONCILER_COMPLETE={shell}_source reconciler" in readme
    monkeypatch.setenv("_RECONCILER_COMPLETE", f"{shell}_source")
    with pytest.raises(SystemExit) as done:
        run([])
    assert done.value.code == 0
    assert "_RECONCILER_COMPLETE" in capsys.readouterr().out
