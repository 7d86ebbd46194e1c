"""Safe YAML loading that remembers where every value came from.

The desired-state file is written by hand and reviewed in pull requests, so a mistake in it
must be reported with the file, line and column it sits on, and a hostile or broken file must
fail fast instead of eating memory. This module is the only place that reads the file.

What it refuses, and why:

- more than `MAX_BYTES` bytes, bytes that are not UTF-8, an empty document: nothing sane to plan;
- duplicate keys: PyYAML silently keeps the last one, which hides a typo'd second entry;
- more than `MAX_ALIASES` alias uses or `MAX_NODES` values after expansion: alias bombs;
- nesting deeper than `MAX_DEPTH`: the composer recurses, a deep file would blow the stack;
- NaN, infinities, hexadecimal/octal/sexagesimal numbers and numbers beyond `MAX_EXPONENT`:
  a price is a plain decimal number or it is a mistake.

Numbers are built as `Decimal` from the scalar's own text (never through `float`), integers
as `int`. Only `true`/`false` are booleans (`yes`/`on` stay strings, so a typed field refuses
them) and mapping keys are always the key's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Location",
    "PathKey",
    "SourceDocument",
    "YamlProblem",
    "load_text",
    "load_yaml",
]

MAX_BYTES = 1_000_000
MAX_ALIASES = 32
MAX_NODES = 50_000
MAX_DEPTH = 32
MAX_EXPONENT = 30

PathKey = tuple[str | int, ...]
Location = tuple[int, int]  # 1-based line and column

_INT = re.compile(r"[-+]?[0-9][0-9_]*")
_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?")
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


class YamlProblem(Exception):
    """One problem with a position; `load_yaml` turns it into a `file:line:col: ...` line."""

    def __init__(self, message: str, location: Location | None, path: PathKey = ()) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.path = path


@dataclass(frozen=True)
class SourceDocument:
    """The plain data of a YAML document plus where each value and key sits in the file."""

    filename: str
    data: Any
    locations: dict[PathKey, Location] = field(default_factory=dict)
    key_locations: dict[PathKey, Location] = field(default_factory=dict)

    def where(self, path: PathKey, *, key: bool = False) -> Location:
        """The closest known location of `path`: itself, else its nearest ancestor."""
        probe = tuple(path)
        while True:
            if key and probe in self.key_locations:
                return self.key_locations[probe]
            if probe in self.locations:
                return self.locations[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer counts alias uses and nesting depth as it goes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # `[[[[...` is scanned token by token before the composer sees one node, so the
        # depth limit must stand here too, or a flood of brackets costs seconds.
        if self.flow_level >= MAX_DEPTH:
            raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", _mark(self.get_mark()))
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise YamlProblem(
                    f"more than {MAX_ALIASES} aliases: refusing a possible alias bomb",
                    _mark(event.start_mark),
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise YamlProblem(
                    f"nesting deeper than {MAX_DEPTH} levels", _mark(event.start_mark)
                )
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def _mark(mark: Any) -> Location | None:
    if mark is None:
        return None
    return (int(mark.line) + 1, int(mark.column) + 1)


def _line_col_of_offset(raw: bytes, offset: int) -> Location:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return (line, column)


class _Builder:
    """Turns the composed node graph into plain data, recording marks, bounding expansion."""

    def __init__(self) -> None:
        self.locations: dict[PathKey, Location] = {}
        self.key_locations: dict[PathKey, Location] = {}
        self.nodes = 0

    def build(self, node: Node, path: PathKey) -> Any:
        self.nodes += 1
        location = _mark(node.start_mark)
        if self.nodes > MAX_NODES:
            raise YamlProblem(f"more than {MAX_NODES} values after alias expansion", location)
        if location is not None:
            self.locations[path] = location
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return _scalar(node, location, path)
        raise YamlProblem("unsupported YAML node", location, path)  # pragma: no cover

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_location = _mark(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem("mapping keys must be plain text", key_location, path)
            key = str(key_node.value)
            if key in result:
                first = self.key_locations.get((*path, key))
                seen = f" (first at line {first[0]})" if first else ""
                raise YamlProblem(f"duplicate key {key!r}{seen}", key_location, (*path, key))
            if key_location is not None:
                self.key_locations[(*path, key)] = key_location
            result[key] = self.build(value_node, (*path, key))
        return result


def _scalar(node: ScalarNode, location: Location | None, path: PathKey) -> Any:
    """Resolve a scalar the way a careful reader would, not the way YAML 1.1 would."""
    text = str(node.value)
    if node.style is not None:  # quoted or block: always a string
        return text
    if node.tag not in (
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
    ):
        if text in _NULLS:
            return None
        if text in _BOOLS:
            return _BOOLS[text]
        if node.tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"):
            return text  # YAML 1.1 spellings such as `yes`, `on`: keep the text
        if node.tag == "tag:yaml.org,2002:timestamp":
            return text
        raise YamlProblem(f"unsupported YAML tag {node.tag}", location, path)
    if _INT.fullmatch(text):
        if len(text) > MAX_EXPONENT:  # also spares int() a quadratic parse of a digit flood
            raise YamlProblem(f"number out of range: {text[:40]}...", location, path)
        return int(text.replace("_", ""))
    if _NUMBER.fullmatch(text):
        return _decimal(text, location, path)
    if node.tag == "tag:yaml.org,2002:float" and text.lower().lstrip("+-") in (".nan", ".inf"):
        raise YamlProblem(f"{text} is not a finite number", location, path)
    if node.tag != "tag:yaml.org,2002:str":
        raise YamlProblem(
            f"unsupported number format {text!r}: write a plain decimal", location, path
        )
    return text


def _decimal(text: str, location: Location | None, path: PathKey) -> Decimal:
    try:
        number = Decimal(text.replace("_", ""))
    except InvalidOperation as error:  # pragma: no cover - the pattern already vetted it
        raise YamlProblem(f"not a number: {text!r}", location, path) from error
    if not number.is_finite() or (number != 0 and abs(number.adjusted()) > MAX_EXPONENT):
        raise YamlProblem(f"number out of range: {text[:40]}", location, path)
    return number


def load_text(text: str, filename: str = "<string>") -> SourceDocument:
    """Parse YAML text into a `SourceDocument`; raises `YamlProblem` on the first problem."""
    if not text.strip():
        raise YamlProblem("the file is empty", (1, 1))
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses some bytes (NUL, controls)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlProblem(f"invalid YAML: {problem or 'syntax error'}", _mark(mark)) from None
    except yaml.YAMLError as error:
        raise YamlProblem(f"invalid YAML: {error}", None) from None
    except RecursionError:
        raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", None) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise YamlProblem("the file holds no document", (1, 1))
    builder = _Builder()
    data = builder.build(root, ())
    return SourceDocument(filename, data, builder.locations, builder.key_locations)


def load_yaml(path: str | Path) -> SourceDocument:
    """Read and parse one YAML file with every limit above; raises `YamlProblem`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise YamlProblem(f"cannot read the file: {error.strerror or error}", None) from None
    if len(raw) > MAX_BYTES:
        raise YamlProblem(f"the file is larger than {MAX_BYTES} bytes", None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlProblem(
            f"not UTF-8: byte 0x{raw[error.start]:02x} cannot be decoded",
            _line_col_of_offset(raw, error.start),
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return load_text(text, str(path))
