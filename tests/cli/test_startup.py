"""Start-up: help screens load only the CLI skeleton, and a plan without `--sandbox` no server.

Each case runs `python -X importtime -m reconciler ...` as a whole process and reads the
modules it imported from the importtime report on stderr, so what is held is what a user's
process loads, not what one test process happened to have imported already. Timing is the
benchmark's business (`bench/startup.py`); these tests hold the imports that cost the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reconciler.cli.root import COMMANDS, LazyGroup, cli
from tests.cli_process import sandbox_env
from tests.conftest import RunningSandbox

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "desired-state.yaml"

SERVER = ("reconciler.sandbox.app", "reconciler.sandbox.server", "uvicorn", "starlette", "socketio")
"""The sandbox server and the libraries only it needs: nothing but `--sandbox` loads them."""

HEAVY = (
    *SERVER,
    "reconciler.apply.engine",
    "reconciler.levret.client",
    "httpx",
    "pydantic",
    "asyncio",
)
"""What no help screen needs: the engine, the client, the models, the event loop."""

HELP_INVOCATIONS = (
    ("--help",),
    ("-h",),
    ("--version",),
    *((name, "--help") for name in sorted(COMMANDS)),
    ("sandbox", "serve", "--help"),
    ("history", "show", "--help"),
)


def imported(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> set[str]:
    """The modules a `reconciler ARGS` process imported (its importtime report)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 2), done.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "reconciler.cli.root" in modules, "the importtime report was not read"
    return modules


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The `names` (packages, with their submodules) found among `modules`."""
    return sorted(
        module
        for module in modules
        for name in names
        if module == name or module.startswith(f"{name}.")
    )


@pytest.mark.parametrize("args", HELP_INVOCATIONS, ids=" ".join)
def test_help_and_version_load_no_engine_client_or_server(args: tuple[str, ...]) -> None:
    assert loaded(imported(*args), HEAVY) == []


def test_root_help_loads_no_command_module() -> None:
    modules = imported("--help")
    command_modules = {entry.target.split(":")[0] for entry in COMMANDS.values()}
    assert sorted(command_modules & modules) == []


def test_a_command_help_loads_that_command_only() -> None:
    modules = imported("plan", "--help")
    assert "reconciler.cli.plan" in modules  # the check can see a lazy command load
    assert loaded(modules, ("reconciler.cli.apply", "reconciler.cli.sandbox")) == []


def test_plan_without_sandbox_loads_no_server(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = sandbox_env(sandbox)
    env.pop("LEVRET_USER_ID")
    modules = imported("plan", "-f", str(EXAMPLE), "--detailed-exitcode", env=env, cwd=tmp_path)
    assert "reconciler.levret.client" in modules  # it did plan, over HTTP
    assert loaded(modules, SERVER) == []


def test_apply_without_sandbox_loads_no_server(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = sandbox_env(sandbox)
    env.pop("LEVRET_USER_ID")
    modules = imported("apply", "-f", str(EXAMPLE), "--auto-approve", env=env, cwd=tmp_path)
    assert "reconciler.apply.engine" in modules  # it did apply
    assert loaded(modules, SERVER) == []


def commands_section(group: click.Group) -> str:
    """The "Commands:" part of `group`'s help, at a fixed width."""
    context = click.Context(group, info_name="reconciler", terminal_width=80)
    return group.get_help(context).split("Commands:\n", 1)[1]


def test_root_help_lists_every_command_with_its_own_summary() -> None:
    """The table's lines are the commands' own: the lazy help reads as the eager one did."""
    fresh = LazyGroup(lazy_commands=COMMANDS)  # `cli` itself may have loaded some already
    eager = click.Group(commands={name: entry.load() for name, entry in COMMANDS.items()})
    for name, entry in COMMANDS.items():
        command = entry.load()
        assert command.name == name
        assert (command.help or "").strip().splitlines()[0] == entry.summary
    listed = commands_section(fresh)
    assert listed == commands_section(eager)
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == sorted(COMMANDS)
    assert commands_section(cli) == listed


def test_every_command_module_is_in_the_table() -> None:
    """A command module added to `reconciler.cli` cannot be left out of the CLI."""
    package = REPO / "reconciler" / "cli"
    defining = {
        path.stem
        for path in package.glob("*.py")
        if path.stem != "root"
        and ("@click.command(" in path.read_text() or "@click.group(" in path.read_text())
    }
    listed = {entry.target.split(":")[0].rsplit(".", 1)[1] for entry in COMMANDS.values()}
    assert defining == listed


def test_an_unknown_command_still_errors_as_before() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "nope"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Error: No such command 'nope'." in done.stderr
    assert "Try 'reconciler --help' for help." in done.stderr
