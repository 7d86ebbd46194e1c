"""The desired-state file: loading, the bad-input corpus, spec checks and the JSON schema."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from planner_support import SPECS

from reconciler.errors import SpecError
from reconciler.model import desired as spec
from reconciler.model.account import SymbolSpec
from reconciler.yamlsource import MAX_BYTES

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).resolve().parents[1] / "bad_inputs"
BAD_FILES = sorted(BAD.glob("*.yaml"))


def _expectations(path: Path) -> list[tuple[int, str, str]]:
    """`<line> <field>: <message fragment>` lines from a sidecar `.expected` or `# expect:`."""
    sidecar = path.with_suffix(".expected")
    if sidecar.exists():
        lines = sidecar.read_text(encoding="utf-8").splitlines()
    else:
        header = path.read_text(encoding="utf-8").splitlines()
        lines = [
            line.removeprefix("# expect: ") for line in header if line.startswith("# expect: ")
        ]
    result = []
    for line in lines:
        number, rest = line.split(" ", 1)
        field, fragment = rest.split(": ", 1)
        result.append((int(number), field, fragment))
    return result


def test_the_bad_input_corpus_is_large_enough() -> None:
    assert len(BAD_FILES) >= 25


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_input_is_refused_naming_file_line_and_field(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} names no expected problem"
    started = time.perf_counter()
    with pytest.raises(SpecError) as raised:
        spec.load(path)
    assert time.perf_counter() - started < 1.0
    problems = raised.value.problems
    for line, field, fragment in expected:
        assert any(
            problem.startswith(f"{path}:{line}:")
            and f": {field}: " in problem
            and fragment in problem
            for problem in problems
        ), f"expected line {line} {field}: {fragment!r} in {problems}"


def test_example_file_loads_with_exact_decimals() -> None:
    desired = spec.load(ROOT / "examples" / "desired-state.yaml")
    btc = desired.symbols["BTC_USDT"]
    assert btc.position is not None and btc.position.size == Decimal("0.5")
    assert btc.orders is not None and btc.orders[1].reduce_only is True
    assert desired.policy.allowed_symbols == ("BTC_USDT", "ETH_USDT", "SOL_USDT")
    assert desired.where(("symbols", "BTC_USDT", "orders", 1, "price")).endswith(":22:29")


def test_numbers_never_pass_through_float() -> None:
    text = "version: 1\ndefaults: {tolerance: {notional: 0.1000000000000000055511}}\n"
    desired = spec.loads(text)
    assert desired.defaults.tolerance.notional == Decimal("0.1000000000000000055511")


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(SpecError) as raised:
        spec.loads(
            "version: 1\nsymbols:\n  BTC_USDT: {position: {side: long, size: -1}}\n"
            "  ETH_USDT: {position: {side: short, size: 0}}\n  SOL_USDT: {protect: maybe}\n",
            "desired.yaml",
        )
    assert raised.value.problems == [
        "desired.yaml:3:43: symbols.BTC_USDT.position.size: must be greater than 0",
        "desired.yaml:4:44: symbols.ETH_USDT.position.size: must be greater than 0",
        "desired.yaml:5:23: symbols.SOL_USDT.protect: must be true or false",
    ]


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\n" + "#" * MAX_BYTES + "\n")
    with pytest.raises(SpecError, match="larger than"):
        spec.load(big)


def test_a_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        spec.load(tmp_path / "absent.yaml")


def test_check_against_specs_names_lines() -> None:
    desired = spec.loads(
        """version: 1
symbols:
  BTC_USDT:
    position: {side: long, size: 0.0005, leverage: 100, take_profit: 50000.05}
  DOGE_USDT:
    position: {side: long, size: 1}
  ETH_USDT:
    orders: [{side: buy, price: 2000, size: 1, leverage: 101}]
""",
        "d.yaml",
    )
    specs = dict(SPECS)
    specs["BTC_USDT"] = SPECS["BTC_USDT"].model_copy(update={"max_leverage": 50})
    assert spec.check_against_specs(desired, specs) == [
        "d.yaml:4:52: symbols.BTC_USDT.position.leverage: 100 exceeds BTC_USDT's max leverage 50",
        "d.yaml:4:34: symbols.BTC_USDT.position.size: "
        "0.0005 is not a multiple of the size step 0.001",
        "d.yaml:4:34: symbols.BTC_USDT.position.size: 0.0005 is below the minimum size 0.001",
        "d.yaml:4:70: symbols.BTC_USDT.position.take_profit: 50000.05 is not a multiple of "
        "the tick size 0.1",
        "d.yaml:6:5: symbols.DOGE_USDT: the exchange does not list this symbol",
        "d.yaml:8:58: symbols.ETH_USDT.orders[0].leverage: 101 exceeds ETH_USDT's max leverage 100",
    ]


def test_halted_symbol_is_a_problem() -> None:
    desired = spec.loads("version: 1\nsymbols:\n  SOL_USDT: {orders: []}\n", "d.yaml")
    halted = SymbolSpec.model_validate({**SPECS["SOL_USDT"].model_dump(), "status": "halted"})
    assert spec.check_against_specs(desired, {"SOL_USDT": halted}) == [
        "d.yaml:3:13: symbols.SOL_USDT: the symbol is halted"
    ]


def test_models_are_frozen() -> None:
    desired = spec.loads("version: 1\n")
    with pytest.raises(ValueError):
        desired.defaults.leverage = 3  # type: ignore[misc]


def test_examples_schema_json_is_up_to_date() -> None:
    committed = json.loads((ROOT / "examples" / "schema.json").read_text(encoding="utf-8"))
    assert committed == spec.json_schema(), "regenerate with `reconciler schema`"


def test_schema_describes_numbers_as_numbers() -> None:
    position = spec.json_schema()["$defs"]["DesiredPosition"]["properties"]
    assert position["size"]["anyOf"][0]["type"] == "number"
    assert position["side"]["enum"] == ["long", "short", "flat"]


def test_the_lock_section_chooses_a_backend_and_does_not_change_the_fingerprint() -> None:
    plain = spec.loads("version: 1\nsymbols: {}\n")
    shared = spec.loads(
        "version: 1\nlock: {backend: postgres, dsn_env: TEAM_LOCK_DSN}\nsymbols: {}\n"
    )
    assert (plain.lock.backend, plain.lock.dsn_env) == ("file", "RECONCILER_LOCK_DSN")
    assert (shared.lock.backend, shared.lock.dsn_env) == ("postgres", "TEAM_LOCK_DSN")
    assert spec.fingerprint(plain) == spec.fingerprint(shared)
