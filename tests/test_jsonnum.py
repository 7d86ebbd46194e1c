"""JSON with exact decimals: the text of every number, and the round trip of every value."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import jsonnum

# Finite decimals of every shape: big and small exponents, trailing zeros, signs, and more
# digits than the context's precision of 28.
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) <= 40
) | st.builds(
    lambda digits, exponent, negative: Decimal((negative, digits, exponent)),
    st.tuples(*[st.integers(0, 9)] * 3) | st.lists(st.integers(0, 9), min_size=1, max_size=32),
    st.integers(-30, 30),
    st.integers(0, 1),
)


@given(DECIMALS)
def test_a_decimal_is_written_as_its_normalised_plain_text(value: Decimal) -> None:
    expected = "0" if value == 0 else format(value.normalize(), "f")
    assert jsonnum.decimal_text(value) == expected
    assert "E" not in expected and "e" not in expected


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("45000.1", "45000.1"),
        ("1.50", "1.5"),
        ("100", "100"),
        ("1E+2", "100"),
        ("100.0", "100"),
        ("0.000001", "0.000001"),
        ("0.0000001", "0.0000001"),
        ("-0.10", "-0.1"),
        ("-0", "0"),
        # More digits than the context keeps: rounded by `normalize`, as before.
        ("123456789012345678901234567890.5", "123456789012345678901234567900"),
    ],
)
def test_the_forms_prices_and_sizes_take(text: str, written: str) -> None:
    assert jsonnum.decimal_text(Decimal(text)) == written


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_a_number_that_cannot_travel_is_refused(text: str) -> None:
    with pytest.raises(jsonnum.JSONNumberError):
        jsonnum.decimal_text(Decimal(text))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | DECIMALS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _as_loaded(value: Any) -> Any:
    """What `loads` gives back for `value`: numbers as written, whole-valued ones as ints."""
    if isinstance(value, Decimal):
        return jsonnum.loads(jsonnum.decimal_text(value))
    if isinstance(value, list):
        return [_as_loaded(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_loaded(item) for key, item in value.items()}
    return value


@given(JSON_VALUES)
def test_dumps_writes_what_the_standard_library_reads_and_loads_gives_it_back(value: Any) -> None:
    written = jsonnum.dumps(value)
    json.loads(written)  # valid JSON for any reader
    assert jsonnum.loads(written) == _as_loaded(value)


def test_keys_keep_their_order_and_non_text_keys_their_text() -> None:
    value = {"b": 1, "a": [True, None, Decimal("0.50")], 3: "x"}
    assert jsonnum.dumps(value) == b'{"b":1,"a":[true,null,0.5],"3":"x"}'
