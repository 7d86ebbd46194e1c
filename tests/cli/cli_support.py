"""Running `reconciler ARGS` in-process for the GitOps tests, and the repository's paths."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.root import run

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@dataclass
class Result:
    code: int
    out: str
    err: str


Invoke = Callable[..., Result]


class TerminalInput(io.StringIO):
    """Typed answers that claim to come from a terminal, as a person at a prompt would."""

    def isatty(self) -> bool:
        return True


def make_invoke(capsys: pytest.CaptureFixture[str]) -> Invoke:
    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def point_at(monkeypatch: pytest.MonkeyPatch, sandbox: Any, tmp_path: Path) -> None:
    """Scratch directory, the demo trading key and the sandbox's URL in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "demo-key")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", "demo-secret")
    monkeypatch.setenv("LEVRET_BASE_URL", sandbox.api_url)
    monkeypatch.delenv("LEVRET_USER_ID", raising=False)


def writes(sandbox: Any) -> list[dict[str, Any]]:
    return [entry for entry in sandbox.requests() if entry["method"] != "GET"]
