"""JSON with exact decimal numbers, shared by the client and the sandbox.

Levret sends prices and sizes as JSON numbers. A float round trip turns `0.1` into
`0.1000000000000000055…` and sizes off their step, so both sides parse numbers as `Decimal`
and write `Decimal` back in plain positional notation. The bytes written here are the bytes
signed and sent, so the output is compact and keeps the caller's key order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["JSONNumberError", "decimal_text", "dumps", "loads"]


class JSONNumberError(ValueError):
    """A number that cannot travel: NaN, infinity, or out of any sane range."""


_MAX_EXPONENT = 64


# `str` of a decimal is already its plain text when it has no exponent, no trailing zero
# after the point and fewer digits than the context's precision (which `normalize` rounds
# to): most prices and sizes, at about half the cost of normalising them.
_PLAIN_TEXT_MAX = 27


def decimal_text(value: Decimal) -> str:
    """Plain positional text of a finite decimal, without a needless exponent or zeros."""
    if not value.is_finite():
        raise JSONNumberError(f"not a finite number: {value}")
    if value == 0:
        return "0"
    text = str(value)
    if "E" in text or (text[-1] == "0" and "." in text) or len(text) > _PLAIN_TEXT_MAX:
        text = format(value.normalize(), "f")
    return text


# The standard library's own string escaper (its C version where there is one): what
# `json.dumps(text, ensure_ascii=False)` does for a string, without building an encoder per
# call, which dominated the cost of every answer the sandbox writes.
_quote: Callable[[str], str] = json.encoder.encode_basestring
_LITERALS = {None: "null", True: "true", False: "false"}


def _encode(value: Any, out: list[str]) -> None:
    # Exact dicts before the checks against abstract classes (`Mapping`, `Sequence`), which
    # cost far more than a type look-up: answers are mostly dicts of text and decimals.
    if isinstance(value, str):
        out.append(_quote(value))
    elif type(value) is dict:
        _encode_mapping(value, out)
    elif isinstance(value, Decimal):
        out.append(decimal_text(value))
    elif isinstance(value, bool) or value is None:
        out.append(_LITERALS[value])
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(decimal_text(Decimal(repr(value))))
    elif isinstance(value, Mapping):
        _encode_mapping(value, out)
    elif isinstance(value, Sequence):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _encode_mapping(value: Mapping[Any, Any], out: list[str]) -> None:
    # The scalars of exact types are written here, not through a call of `_encode` each:
    # a page of 100 orders holds 1,600 of them. Anything else (subclasses included) goes
    # through `_encode`.
    append = out.append
    append("{")
    first = True
    for key, item in value.items():
        if first:
            first = False
        else:
            append(",")
        append(_quote(key if type(key) is str else str(key)))
        append(":")
        kind = type(item)
        if kind is str:
            append(_quote(item))
        elif kind is Decimal:
            append(decimal_text(item))
        elif item is None:
            append("null")
        elif kind is int:
            append(str(item))
        else:
            _encode(item, out)
    append("}")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; `Decimal` as a plain number."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def _parse_float(text: str) -> Decimal:
    number = Decimal(text)
    if not number.is_finite() or abs(number.adjusted()) > _MAX_EXPONENT:
        raise JSONNumberError(f"number out of range: {text[:40]}")
    return number


def _refuse_constant(text: str) -> Any:
    raise JSONNumberError(f"{text} is not a number JSON may carry")


def loads(data: bytes | str) -> Any:
    """Parse JSON; fractional numbers become `Decimal`, NaN and infinity are refused."""
    return json.loads(data, parse_float=_parse_float, parse_constant=_refuse_constant)
