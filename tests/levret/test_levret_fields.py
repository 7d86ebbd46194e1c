"""Every accepted form of a field, and the exact one-line refusal of a form that means nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reconciler import jsonnum
from reconciler.levret import fields
from reconciler.levret.fields import (
    Entity,
    WireFormatError,
    masked_shape,
    read_decimal,
    read_time_ms,
)
from reconciler.levret.parse import ORDER_STATUSES, POSITION_SIDES

ENDPOINT = "GET /positions"


def entity(raw: Any) -> Entity:
    return Entity(ENDPOINT, raw, kind="position", index=0)


@pytest.mark.parametrize(
    ("raw", "expected", "form"),
    [
        (jsonnum.loads("0.1"), Decimal("0.1"), "number"),
        (7, Decimal(7), "number"),
        ("0.1", Decimal("0.1"), "decimal string"),
        (" 12.50 ", Decimal("12.50"), "decimal string"),
        ("1e-8", Decimal("1e-8"), "decimal string"),
    ],
)
def test_numbers_as_json_numbers_or_decimal_strings(raw: Any, expected: Decimal, form: str) -> None:
    value, found = read_decimal(raw) or (None, None)
    assert (value, found) == (expected, form)
    assert isinstance(value, Decimal)


def test_a_json_fraction_never_goes_through_float() -> None:
    value = jsonnum.loads('{"p": 0.30000000000000004}')["p"]
    assert read_decimal(value) == (Decimal("0.30000000000000004"), "number")


@pytest.mark.parametrize("raw", ["abc", "NaN", "Infinity", "", True, None, [1], "1,5"])
def test_not_numbers(raw: Any) -> None:
    assert read_decimal(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected", "form"),
    [
        (1_700_000_000_123, 1_700_000_000_123, "epoch ms"),
        ("1700000000123", 1_700_000_000_123, "epoch ms"),
        (1_700_000_000, 1_700_000_000_000, "epoch seconds"),
        (jsonnum.loads("1700000000.123"), 1_700_000_000_123, "epoch seconds"),
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123, "ISO-8601"),
        ("2023-11-14T23:13:20.123+01:00", 1_700_000_000_123, "ISO-8601"),
    ],
)
def test_times_as_ms_seconds_or_iso(raw: Any, expected: int, form: str) -> None:
    assert read_time_ms(raw) == (expected, form)


def test_seconds_or_milliseconds_is_decided_by_range() -> None:
    # 10^11 ms is 1973; 10^11 s is the year 5138: below it is seconds, from it milliseconds.
    assert read_time_ms(99_999_999_999) == (99_999_999_999_000, "epoch seconds")
    assert read_time_ms(100_000_000_000) == (100_000_000_000, "epoch ms")


@pytest.mark.parametrize("raw", ["2023-11-14T22:13:20", "yesterday", -5, True])
def test_times_without_meaning_are_refused(raw: Any) -> None:
    # An ISO time without a zone could be any of 26 instants.
    assert read_time_ms(raw) is None


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("CANCELED", "cancelled"),
        ("open", "open"),
        ("new", "open"),
        ("NEW", "open"),
        ("partially_filled", "partially_filled"),
        ("partiallyFilled", "partially_filled"),
        ("PARTIALLY_FILLED", "partially_filled"),
        ("Filled", "filled"),
    ],
)
def test_order_status_spellings(spelling: str, meaning: str) -> None:
    assert entity({"status": spelling}).choice("status", ORDER_STATUSES) == meaning


@pytest.mark.parametrize(
    ("spelling", "meaning"), [("long", "long"), ("LONG", "long"), ("Short", "short")]
)
def test_position_side_spellings(spelling: str, meaning: str) -> None:
    assert entity({"side": spelling}).choice("side", POSITION_SIDES) == meaning


@pytest.mark.parametrize("name", ["entryPrice", "entry_price", "ENTRY_PRICE", "entryprice"])
def test_field_names_in_any_case(name: str) -> None:
    found = entity({name: "1"})
    assert found.decimal("entryPrice") == Decimal(1)
    assert found.found["entryPrice"] == (name, "decimal string")


@pytest.mark.parametrize(
    "raw", [{"id": "p1"}, {"positionId": "p1"}, {"position_id": "p1"}, {"id": 7}]
)
def test_ids_under_id_or_the_entitys_own_name(raw: dict[str, Any]) -> None:
    assert entity(raw).identity("positionId") in ("p1", "7")


def test_null_counts_as_missing_for_an_optional_field() -> None:
    assert entity({"takeProfitPrice": None}).decimal("takeProfitPrice", required=False) is None


def test_missing_field_names_endpoint_entity_field_tried_and_present() -> None:
    raw = {"positionId": "p9", "symbol": "BTC_USDT", "qty": "1"}
    found = entity(raw)
    found.identity("positionId")
    with pytest.raises(WireFormatError) as caught:
        found.decimal("entryPrice", "avgEntryPrice")
    assert str(caught.value) == (
        "GET /positions: position #0 (id p9): field entryPrice is missing (tried entryPrice, "
        "entry_price, avgEntryPrice, avg_entry_price as number or decimal string; present: "
        "positionId, symbol, qty) [BAD_PAYLOAD]"
    )
    assert "\n" not in str(caught.value)


def test_unreadable_value_is_described_by_kind_never_shown() -> None:
    with pytest.raises(WireFormatError) as caught:
        entity({"margin": "12,345.67"}).decimal("margin")
    assert "12,345" not in str(caught.value)
    assert "field margin under margin is <text>, unreadable" in str(caught.value)


def test_unknown_enum_value_is_named_since_it_is_no_account_value() -> None:
    with pytest.raises(WireFormatError) as caught:
        entity({"status": "expired"}).choice("status", ORDER_STATUSES)
    assert "under status is 'expired', unreadable" in str(caught.value)
    assert "one of cancelled/filled/open/partially_filled/rejected" in str(caught.value)


def test_masked_shape_keeps_names_and_kinds_only() -> None:
    shape = masked_shape(
        {
            "equity": "1234.5",
            "when": "2023-11-14T22:13:20Z",
            "n": 3,
            "ok": True,
            "x": None,
            "rows": [{"a": "t"}, {"a": "u"}],
        }
    )
    assert shape == (
        "{equity: <decimal text>, when: <ISO time>, n: <number>, ok: <bool>, x: null, "
        "rows: [{a: <text>}, …1 more]}"
    )


def test_extras_are_the_names_no_reading_used() -> None:
    found = entity({"symbol": "X", "venue": "v", "size": 1})
    found.text("symbol")
    found.decimal("size")
    assert found.extras() == ["venue"]


def test_entities_of_one_shape_share_their_name_map_and_still_read_their_own_values() -> None:
    first = Entity("GET /x", {"tickSize": "0.1", "Symbol": "A"}, kind="spec")
    second = Entity("GET /x", {"tickSize": "0.5", "Symbol": "B"}, kind="spec")
    assert first._by_name is second._by_name
    assert (first.decimal("tickSize"), second.decimal("tickSize")) == (
        Decimal("0.1"),
        Decimal("0.5"),
    )
    assert (first.text("symbol"), second.text("symbol")) == ("A", "B")
    other_case = Entity("GET /x", {"TICK_SIZE": "2", "symbol": "C"}, kind="spec")
    assert other_case._by_name is not first._by_name and other_case.decimal("tickSize") == 2
    # A huge object is mapped for itself and never kept.
    huge = {f"k{i}": i for i in range(fields._CACHED_SHAPE_KEYS + 1)}
    before = fields._cached_name_map.cache_info().currsize
    assert Entity("GET /x", huge, kind="big").integer("k3") == 3
    assert fields._cached_name_map.cache_info().currsize == before
