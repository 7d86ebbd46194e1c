"""The composite action's script and the plan workflow's comment script, run locally.

The action's `run` step runs under bash as the runner would (its inputs in the environment,
`$GITHUB_OUTPUT` a file, the reconciler venv under `$RUNNER_TEMP`), against a real sandbox;
the plan workflow's github-script runs under node with a stand-in for the GitHub client, so
the comment a failed plan posts is the one a reviewer would read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.cli_support import EXAMPLES, REPO
from tests.cli.test_cli_flow import DESIRED
from tests.conftest import RunningSandbox


def _step(document: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = (
        document["runs"]["steps"]
        if "runs" in document
        else [step for job in document["jobs"].values() for step in job["steps"]]
    )
    return next(step for step in steps if step.get(key) == value)


def run_action(
    tmp_path: Path, sandbox: RunningSandbox, command: str, file: str, args: str, fmt: str
) -> tuple[int, dict[str, str], str]:
    script = _step(yaml.safe_load((REPO / "action.yml").read_text()), "id", "run")["run"]
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir(exist_ok=True)
    venv = runner_temp / "reconciler-venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.executable).parent.parent)  # the venv the tests run in
    outputs = runner_temp / "github-output"
    outputs.write_text("")
    env = {
        **os.environ,
        "LEVRET_API_KEY_ID": "demo-key",
        "LEVRET_API_KEY_SECRET": "demo-secret",
        "LEVRET_BASE_URL": sandbox.api_url,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(runner_temp / "summary.md"),
        "COMMAND": command,
        "FILES": file,
        "FORMAT": fmt,
        "ARGS": args,
        "OK_EXIT_CODES": "0 2",
        "SUMMARY": "true",
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return done.returncode, values, done.stderr


def test_args_one_per_line_keep_spaces_and_outputs_say_changes(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "desired.yaml").write_text(DESIRED)
    args = "--detailed-exitcode\n  --out\nplan dir/it's plan.json\n\n"
    code, outputs, _ = run_action(tmp_path, sandbox, "plan", "desired.yaml", args, "markdown")
    assert code == 0  # exit 2 is in ok-exit-codes
    assert outputs["exitcode"] == "2" and outputs["has-changes"] == "true"
    assert json.loads((tmp_path / "plan dir" / "it's plan.json").read_text())["actions"]
    assert Path(outputs["output-file"]).read_text().startswith("### Plan for `demo`")


def test_the_plan_comment_can_carry_the_rehearsal(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The example PR workflow passes --rehearse: the markdown the comment posts has it."""
    plan = yaml.safe_load((EXAMPLES / "workflows" / "reconciler-plan.yml").read_text())
    assert "--rehearse" in _step(plan, "id", "plan")["with"]["args"].split()
    (tmp_path / "desired.yaml").write_text(DESIRED)
    args = "--detailed-exitcode\n--rehearse\n"
    code, outputs, _ = run_action(tmp_path, sandbox, "plan", "desired.yaml", args, "markdown")
    assert code == 0 and outputs["exitcode"] == "2", outputs
    text = Path(outputs["output-file"]).read_text()
    assert text.startswith("### Plan for `demo`")
    assert "Rehearsal on a copy of the account (converged; nothing was sent" in text
    assert not [e for e in sandbox.requests() if e["method"] != "GET"]


def test_a_failed_plan_keeps_its_stderr_and_the_comment_shows_it(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "desired.yaml").write_text(DESIRED.replace("side: short", "side: sideways"))
    code, outputs, stderr = run_action(tmp_path, sandbox, "plan", "desired.yaml", "", "markdown")
    assert code == 1 and outputs["exitcode"] == "1" and outputs["has-changes"] == "false"
    errors = Path(outputs["stderr-file"]).read_text()
    assert "symbols.ETH_USDT.position.side" in errors and errors in stderr
    assert Path(outputs["output-file"]).read_text() == ""

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the comment script cannot run here")
    plan = yaml.safe_load((EXAMPLES / "workflows" / "reconciler-plan.yml").read_text())
    comment = _step(plan, "name", "Sticky pull-request comment")["with"]["script"]
    harness = (
        'const fs = require("fs"); let posted = null;\n'
        "const github = { paginate: async () => [], rest: { issues: {\n"
        "  listComments: null,\n"
        "  createComment: async (a) => { posted = a.body; },\n"
        "  updateComment: async (a) => { posted = a.body; } } } };\n"
        'const context = { repo: { owner: "o", repo: "r" }, issue: { number: 7 } };\n'
        f"(async () => {{\n{comment}\n}})().then(() => process.stdout.write(posted));\n"
    )
    env = {
        **os.environ,
        "PLAN_MARKDOWN": outputs["output-file"],
        "PLAN_STDERR": outputs["stderr-file"],
        "EXIT_CODE": outputs["exitcode"],
    }
    done = subprocess.run(
        [node, "-e", harness], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    body = done.stdout
    assert body.startswith("<!-- reconciler-plan -->") and "exit 1" in body
    assert "<details open><summary>stderr</summary>" in body
    assert "symbols.ETH_USDT.position.side" in body


def test_the_install_step_installs_from_the_lock_with_hashes(tmp_path: Path) -> None:
    """The action's install script, as the runner runs it, into a fresh venv from the index.

    `--require-hashes` makes pip refuse a dependency the lock lacks or a file whose hash
    differs, and `--no-deps` leaves nothing to resolve after it; a dry run of a full install
    from nothing but the venv then proves the lock held every dependency, extras included.
    """
    action = yaml.safe_load((REPO / "action.yml").read_text())
    script = _step(action, "id", "install")["run"]
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_ACTION_PATH": str(REPO),
    }
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    venv = runner_temp / "reconciler-venv" / "bin"
    version = subprocess.run(
        [venv / "reconciler", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "0.1.0" in version.stdout
    report = subprocess.run(
        [
            venv / "python",
            "-m",
            "pip",
            "install",
            "--isolated",
            "--no-index",
            "--dry-run",
            "--no-build-isolation",
            "--quiet",
            "--report",
            "-",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    wanted = [item["metadata"]["name"] for item in json.loads(report.stdout)["install"]]
    assert wanted == ["reconciler"], wanted
