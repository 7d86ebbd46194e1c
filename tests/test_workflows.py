"""The workflows, the composite action and the pre-commit hook are valid and safe to copy.

Each workflow must pass the GitHub schemas (`check-jsonschema`, offline: the schemas ship in
the package), `zizmor --offline` with no finding of medium or high severity, and `actionlint`
(with shellcheck on every `run:` script) with no finding at all. actionlint reads workflows,
not action metadata, so the action's scripts go through shellcheck with actionlint's own
options. All these tools are test dependencies: a missing tool fails these tests instead of
skipping them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli.root import run
from tests.cli.cli_support import EXAMPLES, REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml")) + sorted(
    (EXAMPLES / "workflows").glob("*.yml")
)
ACTION = REPO / "action.yml"
ALL = [*WORKFLOWS, ACTION]
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the venv), else on PATH; never skipped."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is a test dependency: install the package's test extra"
    return found


def ids(paths: list[Path]) -> list[str]:
    return [path.relative_to(REPO).as_posix() for path in paths]


def test_the_expected_workflows_exist() -> None:
    names = {path.name for path in (EXAMPLES / "workflows").glob("*.yml")}
    assert names >= {
        "reconciler-plan.yml",
        "reconciler-apply.yml",
        "reconciler-rebalance.yml",
        "reconciler-drift.yml",
    }


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_schema(path: Path) -> None:
    schema = "vendor.github-actions" if path == ACTION else "vendor.github-workflows"
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_of_medium_or_high_severity() -> None:
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", *map(str, ALL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    serious = [
        (finding["ident"], finding["determinations"]["severity"], finding["desc"])
        for finding in findings
        if finding["determinations"]["severity"] not in ("Unknown", "Informational", "Low")
    ]
    assert serious == [], serious


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    """actionlint's findings as JSON, shellcheck on; pyflakes off (no step runs Python)."""
    done = subprocess.run(
        [
            tool("actionlint"),
            "-shellcheck",
            tool("shellcheck"),
            "-pyflakes=",
            "-format",
            "{{json .}}",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: findings; anything else: it failed
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_actionlint_finds_nothing() -> None:
    findings = actionlint(*WORKFLOWS)
    assert [(f["filepath"], f["line"], f["kind"], f["message"]) for f in findings] == []


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    """A control: a missing job and an unquoted variable (shellcheck's SC2086) are flagged."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: push\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    needs: no-such-job\n    steps:\n      - run: echo $HOME_DIR\n"
    )
    findings = actionlint(bad)
    assert {finding["kind"] for finding in findings} == {"job-needs", "shellcheck"}
    assert any("SC2086" in finding["message"] for finding in findings)


# actionlint's own shellcheck options: the codes it leaves out are the ones that `env:` and
# `${{ }}` placeholders set off (a variable set by the runner looks unassigned to shellcheck).
SHELLCHECK_AS_ACTIONLINT = ["--norc", "--shell", "bash"]
SHELLCHECK_EXCLUDED = "SC1091,SC2194,SC2050,SC2153,SC2154,SC2157,SC2043"


def shellcheck(script: Path) -> str:
    """shellcheck's findings on one script, as actionlint would run it; empty when clean."""
    done = subprocess.run(
        [tool("shellcheck"), *SHELLCHECK_AS_ACTIONLINT, "-e", SHELLCHECK_EXCLUDED, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_shellcheck_finds_nothing_in_the_action_scripts(tmp_path: Path) -> None:
    steps = [s for s in _steps(yaml.safe_load(ACTION.read_text())) if "run" in s]
    assert steps and all(step["shell"] == "bash" for step in steps)
    findings = {}
    for number, step in enumerate(steps):
        script = tmp_path / f"step-{number}.sh"
        script.write_text("set -eo pipefail\n" + step["run"])
        findings[step.get("id", number)] = shellcheck(script)
    assert {step: found for step, found in findings.items() if found} == {}
    control = tmp_path / "control.sh"
    control.write_text('cp $SOURCE "$TARGET"\n')
    assert "SC2086" in shellcheck(control)


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in document:
        steps: list[dict[str, Any]] = document["runs"]["steps"]
        return steps
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_actions_are_pinned_and_checkout_keeps_no_credentials(path: Path) -> None:
    text = path.read_text()
    document = yaml.safe_load(text)
    for step in _steps(document):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        assert SHA_PIN.match(uses), f"{uses} is not pinned to a full commit"
        line = next(line for line in text.splitlines() if uses in line)
        assert re.search(r"#\s*v\d", line), f"{uses}: say the version in a comment"
        if uses.startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_no_expression_inside_a_script(path: Path) -> None:
    """`${{ }}` in `run:` or a github-script `script:` is template injection waiting to happen."""
    for step in _steps(yaml.safe_load(path.read_text())):
        assert "${{" not in step.get("run", ""), step.get("name")
        assert "${{" not in step.get("with", {}).get("script", ""), step.get("name")


@pytest.mark.parametrize("path", WORKFLOWS, ids=ids(WORKFLOWS))
def test_least_privilege(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    top = document.get("permissions")
    assert top is not None, "set workflow-level permissions"
    assert top in ({}, {"contents": "read"})
    for name, job in document["jobs"].items():
        granted = job.get("permissions", top)
        assert isinstance(granted, dict), name
        assert all(level in ("read", "write", "none") for level in granted.values())
        assert "write-all" not in str(granted)
        assert set(granted) <= {"contents", "pull-requests", "issues", "actions"}, name
        if granted.get("contents") == "write":
            pytest.fail(f"{name}: no workflow here pushes")


def test_apply_workflows_share_one_concurrency_group_per_account() -> None:
    apply = yaml.safe_load((EXAMPLES / "workflows" / "reconciler-apply.yml").read_text())
    rebalance = yaml.safe_load((EXAMPLES / "workflows" / "reconciler-rebalance.yml").read_text())
    assert apply["concurrency"]["group"] == rebalance["concurrency"]["group"]
    assert apply["concurrency"]["cancel-in-progress"] is False


def test_precommit_hook() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [hook for hook in hooks if hook["id"] == "reconciler-validate"]
    assert hook["entry"] == "reconciler validate --offline"
    assert hook["language"] == "python"
    pattern = re.compile(hook["files"])
    assert pattern.search("examples/desired-state.yaml")
    assert pattern.search("accounts/alpha.yml")
    assert not pattern.search(".github/workflows/ci.yml")
    assert not pattern.search("action.yml")


def test_precommit_entry_runs_on_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(path) for path in sorted(EXAMPLES.rglob("*.yaml"))]
    argv = ["validate", "--offline", *files]
    assert run(argv) == 0, capsys.readouterr().err


def test_the_audit_would_catch_an_unsafe_workflow(tmp_path: Path) -> None:
    """A control: the same check fails on injection, an unpinned action and a risky trigger."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: pull_request_target\npermissions: {}\njobs:\n  x:\n"
        "    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = {finding["ident"] for finding in json.loads(done.stdout)}
    assert {"template-injection", "unpinned-uses", "dangerous-triggers"} <= found
