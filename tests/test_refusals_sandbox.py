"""Plans that could not end safely are refused before anything is sent: one test per case.

Each test runs the CLI in-process against a real sandbox server (demo account: BTC long 0.2
at 10x, ETH short 3, resting buys on BTC and SOL; marks BTC 45000, ETH 2500, SOL 100) and
reads the sandbox's request log to prove that nothing unsafe reached the exchange, and the
message to prove it names what was refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.commands.cli_support import Invoke, make_invoke, point_at, writes


@pytest.fixture
def cli(sandbox, tmp_path, monkeypatch, capsys) -> Invoke:  # type: ignore[no-untyped-def]
    """Run `reconciler ARGS` in a scratch directory with the demo key pointed at `sandbox`."""
    point_at(monkeypatch, sandbox, tmp_path)
    return make_invoke(capsys)


def _write(tmp_path: Path, text: str, name: str = "desired.yaml") -> str:
    (tmp_path / name).write_text("version: 1\naccount: {user_id: demo}\n" + text)
    return name


def _sent(sandbox: Any) -> list[tuple[str, str]]:
    return [(entry["method"], entry["path"]) for entry in writes(sandbox)]


def test_huge_numbers_are_a_located_error_not_a_traceback(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path,
        "symbols:\n"
        "  BTC_USDT:\n"
        "    position: {side: long, size: 1e27}\n"
        "  ETH_USDT:\n"
        "    position: {side: short, notional: 1e29}\n",
    )
    for command in ("plan", "apply"):
        result = (
            cli(command, "-f", name, "--auto-approve")
            if command == "apply"
            else cli(command, "-f", name)
        )
        assert result.code == 1, result.err
        assert "Traceback" not in result.err
        assert f"{name}:5:34: symbols.BTC_USDT.position.size: " in result.err
        assert f"{name}:7:39: symbols.ETH_USDT.position.notional: " in result.err
    assert sandbox.requests() == []  # refused before even a read
