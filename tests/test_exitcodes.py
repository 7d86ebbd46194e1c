"""The exit-code contract: one enum, one severity order, and the README's table agrees."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from reconciler.errors import (
    Declined,
    LockHeld,
    PartialApply,
    PolicyViolation,
    PreconditionFailed,
    ReconcilerError,
    SpecError,
)
from reconciler.exitcodes import SEVERITY, ExitCode, most_severe

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_code_is_ranked_once_and_documented() -> None:
    assert sorted(SEVERITY) == sorted(ExitCode)
    assert [int(code) for code in SEVERITY] == [5, 1, 4, 3, 6, 7, 2, 0]
    (body,) = ast.parse(inspect.getsource(ExitCode)).body
    assert isinstance(body, ast.ClassDef)
    documented = [
        statement.targets[0].id
        for statement, following in zip(body.body, body.body[1:], strict=False)
        if isinstance(statement, ast.Assign)
        and isinstance(statement.targets[0], ast.Name)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
        and isinstance(following.value.value, str)
    ]
    assert documented == [code.name for code in ExitCode]  # a docstring under each member


def test_the_readme_table_names_every_member_with_its_value() -> None:
    section = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| `([A-Z_]+)` \|", section, flags=re.MULTILINE)
    assert [(int(value), name) for value, name in rows] == [
        (code.value, code.name) for code in ExitCode
    ]


def test_each_error_class_carries_its_member() -> None:
    assert ReconcilerError.exit_code is ExitCode.ERROR
    assert SpecError.exit_code is ExitCode.ERROR
    assert PreconditionFailed.exit_code is ExitCode.STALE_PLAN
    assert PolicyViolation.exit_code is ExitCode.POLICY_VIOLATION
    assert PartialApply.exit_code is ExitCode.PARTIAL_APPLY
    assert LockHeld.exit_code is ExitCode.LOCK_HELD
    assert Declined.exit_code is ExitCode.DECLINED


def test_an_unknown_code_counts_as_an_error_and_is_never_returned() -> None:
    assert most_severe([9, 0]) is ExitCode.ERROR
    assert most_severe([9, 5]) is ExitCode.PARTIAL_APPLY
    assert most_severe([2, 9, 4]) is ExitCode.ERROR
