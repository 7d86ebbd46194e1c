"""The JSON Schema refuses what `validate` refuses, wherever a schema can say it.

check-jsonschema (what editors' and pre-commit's schema checks run) is the judge: every bad
input that `validate` rejects for a reason a schema can state must be rejected by it too.
The few a schema cannot state are listed with the reason, so a new bad input must be
classified.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from reconciler.model.desired import json_schema

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).resolve().parents[1] / "bad_inputs"

NOT_FOR_A_SCHEMA = {
    "hex_number.yaml": "0x1A is a number to YAML; refusing the spelling is the loader's job",
    "nan.yaml": ".nan is a YAML number; JSON Schema bounds cannot exclude NaN",
    "leverage_over_policy.yaml": "compares a leverage with policy.max_leverage",
    "tpsl_inverted_long.yaml": "compares take_profit with stop_loss",
    "tpsl_inverted_short.yaml": "compares take_profit with stop_loss",
}


def _check(files: list[Path]) -> dict[str, Any]:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(checker), "-o", "json", "--schemafile", str(ROOT / "examples" / "schema.json")]
        + [str(file) for file in files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_bad_input_for_a_schema_reason_is_rejected_by_check_jsonschema() -> None:
    bad = sorted(BAD.glob("*.yaml"))
    assert set(NOT_FOR_A_SCHEMA) <= {file.name for file in bad}
    for_a_schema = [file for file in bad if file.name not in NOT_FOR_A_SCHEMA]
    result = _check(for_a_schema)
    rejected = {Path(e["filename"]).name for e in result["errors"] + result["parse_errors"]}
    accepted = sorted(file.name for file in for_a_schema if file.name not in rejected)
    assert accepted == [], f"check-jsonschema accepts what validate refuses: {accepted}"


def test_the_examples_pass_check_jsonschema() -> None:
    examples = sorted((ROOT / "examples").glob("**/*.yaml"))
    assert examples
    result = _check(examples)
    assert result["status"] == "ok", result


def test_every_field_has_a_description() -> None:
    schema = json_schema()
    undocumented = [
        f"{name}.{field}"
        for name, definition in [("(root)", schema), *schema["$defs"].items()]
        for field, body in definition.get("properties", {}).items()
        if not body.get("description")
    ]
    assert undocumented == []
