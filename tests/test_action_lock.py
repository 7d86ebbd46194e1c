"""The composite action's lock file covers exactly the package's dependencies, pinned and hashed.

`action.yml` installs with `pip install --require-hashes -r requirements/action.txt` and then
the package with `--no-deps --no-build-isolation`, so whatever the lock leaves out or lets
float is a hole: a dependency added to pyproject.toml without regenerating the lock would
only break (or, worse, be fetched unchecked) on a user's runner. These tests read both files
and fail on any drift between them; `test_action_script.py` runs the install itself.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.cli.cli_support import REPO

LOCK = REPO / "requirements" / "action.txt"
REGENERATE = (
    "pip-compile --allow-unsafe --build-deps-for=wheel --generate-hashes "
    "--output-file=requirements/action.txt --strip-extras pyproject.toml"
)
RUNTIME = "reconciler (pyproject.toml)"
BUILD = "reconciler (pyproject.toml::build-system.requires)"
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
    r"(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\$"
)
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}(?P<more>\s*\\)?$")


@dataclass
class Locked:
    """One package of the lock: its pin, its hashes and what pulled it in (`# via`)."""

    version: str
    hashes: int = 0
    via: set[str] = field(default_factory=set)


def parse(text: str) -> dict[str, Locked]:
    """The lock as pip-compile writes it; any line that is not a pin, a hash or a comment fails."""
    locked: dict[str, Locked] = {}
    current: Locked | None = None
    expect_hash = False
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{LOCK.name}:{number}: {line!r}"
        if expect_hash:
            match = HASH.match(line)
            assert match, f"{where}: a hash line was expected"
            assert current is not None
            current.hashes += 1
            expect_hash = match["more"] is not None
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            via = stripped.lstrip("#").strip()
            via = via.removeprefix("via").strip()
            if current is not None and via:
                current.via.add(via)
            continue
        match = PIN.match(line)
        assert match, f"{where}: every requirement is `name==version \\` followed by its hashes"
        name = canonicalize_name(match["name"])
        assert name not in locked, f"{where}: {name} twice"
        current = locked[name] = Locked(version=match["version"])
        expect_hash = True
    assert not expect_hash, "the lock ends inside a requirement"
    return locked


@pytest.fixture(scope="module")
def lock() -> dict[str, Locked]:
    return parse(LOCK.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_pinned_exactly_and_hashed(lock: dict[str, Locked]) -> None:
    assert len(lock) > 10
    for name, package in lock.items():
        Version(package.version)  # an exact release, not a range
        assert package.hashes >= 1, f"{name} has no hash"
        assert package.via, f"{name}: nothing in the lock says why it is there"


def test_the_direct_packages_are_exactly_the_runtime_dependencies_and_the_build_backend(
    lock: dict[str, Locked], pyproject: dict[str, Any]
) -> None:
    """Adding, removing or raising a dependency without regenerating the lock fails here."""
    for source, wanted in (
        (RUNTIME, pyproject["project"]["dependencies"]),
        (BUILD, pyproject["build-system"]["requires"]),
    ):
        requirements = {canonicalize_name(r.name): r for r in map(Requirement, wanted)}
        direct = {name for name, package in lock.items() if source in package.via}
        assert direct == set(requirements), f"{source}: regenerate with `{REGENERATE}`"
        for name, requirement in requirements.items():
            version = lock[name].version
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{name}=={version} does not satisfy {requirement}: regenerate the lock"
            )


def test_every_other_package_is_pulled_in_by_a_locked_one(lock: dict[str, Locked]) -> None:
    """No stray pin: each `# via` names a locked package or the project itself."""
    for name, package in lock.items():
        for reason in package.via - {RUNTIME, BUILD}:
            assert canonicalize_name(reason) in lock, f"{name} via {reason}, which is not locked"


def test_the_extras_asked_for_are_locked(
    lock: dict[str, Locked], pyproject: dict[str, Any]
) -> None:
    """`--strip-extras` drops `psycopg[binary]` to `psycopg`: the extra's package must be there."""
    for requirement in map(Requirement, pyproject["project"]["dependencies"]):
        for extra in requirement.extras:
            assert canonicalize_name(f"{requirement.name}-{extra}") in lock, requirement


def test_the_regeneration_command_is_written_down(lock: dict[str, Locked]) -> None:
    header = "\n".join(takewhile(lambda line: line.startswith("#"), LOCK.read_text().splitlines()))
    assert REGENERATE in header
    assert REGENERATE in (REPO / "docs" / "gitops.md").read_text()


def test_the_parser_refuses_a_range_and_a_missing_hash() -> None:
    """A control: the checks above would see a floating pin or an unhashed requirement."""
    hashed = "    --hash=sha256:" + "0" * 64
    assert parse(f"click==8.1.0 \\\n{hashed}\n    # via reconciler (pyproject.toml)\n")
    with pytest.raises(AssertionError, match="every requirement"):
        parse(f"click>=8.1 \\\n{hashed}\n")
    with pytest.raises(AssertionError, match="every requirement"):
        parse("click==8.1.0\n")
    with pytest.raises(AssertionError, match="ends inside"):
        parse("click==8.1.0 \\\n")
    with pytest.raises(AssertionError, match="a hash line"):
        parse("click==8.1.0 \\\nrich==13.0 \\\n")


def test_the_action_installs_from_this_lock() -> None:
    text = (REPO / "action.yml").read_text()
    relative = LOCK.relative_to(REPO).as_posix()
    assert f'--require-hashes -r "$GITHUB_ACTION_PATH/{relative}"' in text
    assert '--no-deps --no-build-isolation "$GITHUB_ACTION_PATH"' in text
