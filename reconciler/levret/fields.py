"""Reading one field of one entity: lenient on form, strict on meaning.

An `Entity` wraps one JSON object of an answer together with where it came from (endpoint,
index, id), so any field it cannot read raises a `WireFormatError` whose single line names
the endpoint, the entity, the field, the names and formats tried and the names present. The
line never carries a value: values may be balances, and the raw shape shown at `-v` is masked.

Accepted forms:

- names: camelCase, snake_case or any letter case (`tickSize`, `tick_size`, `TICKSIZE`) and
  the listed aliases (an entity's `id` also under `orderId`, `positionId`, `tradeId`);
- numbers: JSON numbers or decimal strings, always `Decimal`, never through float;
- times: epoch milliseconds, epoch seconds (by range: below 10^11 is seconds, i.e. before
  the year 5138 in seconds, after 1973 in milliseconds) or ISO-8601 strings with a zone;
- enums: any letter case, `_`/`-`/space ignored, plus the common synonyms each field lists.

Every reading is recorded in `Entity.found` (`field -> (name used, form)`), which is what
`reconciler doctor` reports field by field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from reconciler.levret.errors import ServerError

__all__ = [
    "SECONDS_BELOW",
    "Entity",
    "WireFormatError",
    "masked_shape",
    "normal_name",
    "read_decimal",
    "read_time_ms",
]

SECONDS_BELOW = Decimal(10) ** 11
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WireFormatError(ServerError):
    """An answer the reconciler cannot read; the message is one line and carries no value.

    `shape` is the raw entity with every value masked, for `-v`. A `ServerError`, so for a
    write that executed the client still reports the outcome as unknown.
    """

    def __init__(self, endpoint: str, message: str, *, shape: str = "") -> None:
        method, _, path = endpoint.partition(" ")
        self.endpoint = endpoint
        self.shape = shape
        super().__init__(message, code="BAD_PAYLOAD", method=method, path=path)


_SNAKE_BREAK = re.compile(r"(?<=[a-z0-9])([A-Z])")
# Field names come from a small fixed vocabulary (the exchange's and the readings'), while
# every entity of every answer asks for them: a bulk read of a few thousand orders spent more
# time normalising names than reading values. The caches are bounded all the same, so an
# exchange sending ever new key names cannot grow them without end.
_NAME_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_NAME_CACHE_SIZE)
def normal_name(name: str) -> str:
    """The key a field name is matched by: letter case and `_`, `-` ignored."""
    return name.replace("_", "").replace("-", "").lower()


@functools.lru_cache(maxsize=_NAME_CACHE_SIZE)
def _snake(name: str) -> str:
    return _SNAKE_BREAK.sub(r"_\1", name).lower()


@functools.lru_cache(maxsize=_NAME_CACHE_SIZE)
def _normals(field: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The keys a reading looks under, in order: the field's, then its aliases'."""
    return tuple(normal_name(name) for name in (field, *aliases))


# One answer's entities share their keys (a page of orders has one shape), so the map from
# each key's normal form to the key is made once per shape, not once per entity. The map is
# shared: nothing writes to it. Only shapes of the size the exchange's entities have are
# kept, so an answer of huge objects cannot fill the cache with them.
_SHAPE_CACHE_SIZE = 256
_CACHED_SHAPE_KEYS = 64


def _names_by_normal(keys: tuple[Any, ...]) -> Mapping[str, str]:
    if len(keys) > _CACHED_SHAPE_KEYS:
        return _name_map(keys)
    return _cached_name_map(keys)


def _name_map(keys: tuple[Any, ...]) -> Mapping[str, str]:
    return {normal_name(str(key)): str(key) for key in keys}


_cached_name_map = functools.lru_cache(maxsize=_SHAPE_CACHE_SIZE)(_name_map)


def _text(formats: str | Callable[[], str]) -> str:
    return formats if isinstance(formats, str) else formats()


def masked_shape(value: Any, depth: int = 0) -> str:
    """The JSON shape of `value` with every value replaced by its kind."""
    if isinstance(value, Mapping):
        if depth > 3:
            return "{…}"
        inner = ", ".join(
            f"{key!s}: {masked_shape(item, depth + 1)}" for key, item in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        more = f", …{len(value) - 1} more" if len(value) > 1 else ""
        return f"[{masked_shape(value[0], depth + 1)}{more}]"
    return _kind(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "<bool>"
    if isinstance(value, int | Decimal | float):
        return "<number>"
    if isinstance(value, str):
        if _DECIMAL_TEXT.fullmatch(value.strip()):
            return "<decimal text>"
        if _parse_iso(value) is not None:
            return "<ISO time>"
        return "<text>"
    return f"<{type(value).__name__}>"


def read_decimal(value: Any) -> tuple[Decimal, str] | None:
    """A finite number from a JSON number or a decimal string, with the form found."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value), "number"
    if isinstance(value, Decimal):
        return (value, "number") if value.is_finite() else None
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return (number, "decimal string") if number.is_finite() else None
    return None


def _parse_iso(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def read_time_ms(value: Any) -> tuple[int, str] | None:
    """Epoch milliseconds from ms, seconds (decided by range) or an ISO-8601 time with zone."""
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value.strip()):
        moment = _parse_iso(value)
        if moment is None:
            return None
        return (moment - _EPOCH) // timedelta(milliseconds=1), "ISO-8601"
    number = read_decimal(value)
    if number is None or number[0] < 0:
        return None
    amount, _ = number
    if amount < SECONDS_BELOW:
        return int(amount * 1000), "epoch seconds"
    return int(amount), "epoch ms"


class Entity:
    """One JSON object of an answer, read field by field with exact errors."""

    def __init__(self, endpoint: str, raw: Any, *, kind: str, index: int | None = None) -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.index = index
        self.ident: str | None = None
        self.found: dict[str, tuple[str, str]] = {}
        self.absent: list[str] = []  # optional fields looked for and not there (or null)
        self.looked: set[str] = set()  # normalised names every reading tried
        if not isinstance(raw, Mapping):
            raise WireFormatError(
                endpoint,
                f"{self._where()}: expected an object, found {_kind(raw)}",
                shape=masked_shape(raw),
            )
        self.raw: Mapping[str, Any] = raw
        self._by_name = _names_by_normal(tuple(raw))

    # ----------------------------------------------------------------- bookkeeping

    def _where(self) -> str:
        parts = [self.kind]
        if self.index is not None:
            parts.append(f"#{self.index}")
        if self.ident is not None:
            parts.append(f"(id {self.ident})")
        return " ".join(parts)

    def extras(self) -> list[str]:
        """Names present that no reading used (ignored by the reconciler)."""
        return sorted(str(key) for key in self.raw if normal_name(str(key)) not in self.looked)

    def fail(self, field: str, names: Iterable[str], formats: str, problem: str) -> WireFormatError:
        tried = ", ".join(dict.fromkeys(names))
        present = ", ".join(str(key) for key in self.raw) or "none"
        return WireFormatError(
            self.endpoint,
            f"{self._where()}: field {field} {problem} (tried {tried} as {formats}; "
            f"present: {present})",
            shape=masked_shape(self.raw),
        )

    def _names(self, field: str, aliases: tuple[str, ...]) -> list[str]:
        names = [field, _snake(field)]
        for alias in aliases:
            names += [alias, _snake(alias)]
        return list(dict.fromkeys(names))

    def _lookup(self, field: str, aliases: tuple[str, ...]) -> tuple[str, Any] | None:
        # The hot path of every answer read (a few thousand entities, ~18 fields each).
        looked, by_name, raw = self.looked, self._by_name, self.raw
        for normal in _normals(field, aliases):
            looked.add(normal)
            key = by_name.get(normal)
            if key is not None:
                value = raw[key]
                if value is not None:
                    return key, value
        return None

    def _read(
        self,
        field: str,
        aliases: tuple[str, ...],
        formats: str | Callable[[], str],
        convert: Any,
        required: bool,
        reveal: bool = False,
    ) -> Any:
        hit = self._lookup(field, aliases)
        if hit is None:
            if required:
                raise self.fail(field, self._names(field, aliases), _text(formats), "is missing")
            self.absent.append(field)
            return None
        key, value = hit
        converted = convert(value)
        if converted is None:
            found = repr(value) if reveal and isinstance(value, str) and len(value) <= 40 else None
            raise self.fail(
                field,
                self._names(field, aliases),
                _text(formats),
                f"under {key} is {found or _kind(value)}, unreadable",
            )
        result, form = converted
        self.found[field] = (key, form)
        return result

    # ----------------------------------------------------------------- typed readings

    def identity(self, own_name: str) -> str:
        """The entity's id, under `id` or its own name (`orderId`); kept for later errors."""
        value: str = self.text("id", own_name)
        self.ident = value
        return value

    def text(self, field: str, *aliases: str, required: bool = True) -> Any:
        return self._read(field, aliases, "non-empty string", _as_text, required)

    def decimal(self, field: str, *aliases: str, required: bool = True) -> Any:
        return self._read(field, aliases, "number or decimal string", read_decimal, required)

    def integer(self, field: str, *aliases: str, required: bool = True) -> Any:
        return self._read(field, aliases, "integer or integer string", _as_integer, required)

    def time_ms(self, field: str, *aliases: str, required: bool = True) -> Any:
        formats = "epoch ms, epoch seconds or ISO-8601"
        return self._read(field, aliases, formats, read_time_ms, required)

    def boolean(self, field: str, *aliases: str, required: bool = True) -> Any:
        return self._read(field, aliases, "boolean or true/false", _as_boolean, required)

    def choice(
        self, field: str, spellings: Mapping[str, str], *aliases: str, required: bool = True
    ) -> Any:
        """One of an enum's values; `spellings` maps normalised spellings to the value."""
        reading = _ChoiceReading(spellings)
        return self._read(field, aliases, reading.formats, reading, required, reveal=True)

    def nested(self, field: str, *aliases: str) -> Any:
        """A raw sub-value (a list, an object), or None when absent."""
        hit = self._lookup(field, aliases)
        if hit is None:
            return None
        self.found[field] = (hit[0], type(hit[1]).__name__)
        return hit[1]


# ----------------------------------------------------------------- conversions
# Module-level, not made afresh for each field of each entity: a page of orders reads
# seventeen fields of a hundred entities.


def _as_text(value: Any) -> tuple[str, str] | None:
    if isinstance(value, str) and value:
        return value, "string"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), "number"
    return None


def _as_integer(value: Any) -> tuple[int, str] | None:
    number = read_decimal(value)
    if number is None or number[0] != number[0].to_integral_value():
        return None
    return int(number[0]), number[1]


def _as_boolean(value: Any) -> tuple[bool, str] | None:
    if isinstance(value, bool):
        return value, "boolean"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true", "boolean string"
    return None


class _ChoiceReading:
    """The conversion of one enum's field: a spelling to its meaning."""

    def __init__(self, spellings: Mapping[str, str]) -> None:
        self.spellings = spellings

    def __call__(self, value: Any) -> tuple[str, str] | None:
        if not isinstance(value, str):
            return None
        meaning = self.spellings.get(normal_name(value.strip().replace(" ", "")))
        return None if meaning is None else (meaning, f"enum {value!r}")

    def formats(self) -> str:  # only an error names them
        return f"one of {'/'.join(sorted(set(self.spellings.values())))}"
