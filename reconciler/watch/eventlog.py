"""Structured log lines for long-running commands: one event per line, text or JSON.

A service's log is read by machines first (journald, a log shipper, `jq`) and by people
second, so every line is an *event* with named fields rather than a sentence: `time` (UTC,
ISO-8601, milliseconds), `level`, `event`, then the fields, flat. `--log-format json` writes
one JSON object per line; `text` writes `time LEVEL event key=value ...` for a terminal.

Numbers that are `Decimal` are written as exact strings, never through a float. Records of
the standard `logging` module (the exchange client's and the stream's) can be routed here
with `LoggingBridge`, so a service has one log format, not two.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, TextIO

__all__ = ["LOG_FORMATS", "EventLog", "Level", "LogFormat", "LoggingBridge"]

LogFormat = Literal["text", "json"]
Level = Literal["debug", "info", "warning", "error"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_RANK: dict[Level, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    """A JSON-ready value: Decimal as exact text, datetimes in ISO-8601 UTC, tuples as lists."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, str):
        return plain if plain and " " not in plain and '"' not in plain else json.dumps(plain)
    return json.dumps(plain, separators=(",", ":"))


class EventLog:
    """`log.info("drift", actions=2)`: writes one line to `stream` (default stdout)."""

    def __init__(
        self,
        output_format: LogFormat = "text",
        *,
        stream: TextIO | None = None,
        clock: Callable[[], datetime] = _utc_now,
        min_level: Level = "info",
    ) -> None:
        if output_format not in LOG_FORMATS:
            raise ValueError(f"unknown log format {output_format!r}")
        self.format = output_format
        self._stream = stream
        self._clock = clock
        self._min_rank = _RANK[min_level]

    def emit(self, level: Level, event: str, /, **fields: Any) -> None:
        """Write one event; a field named like a reserved key is prefixed with `field_`."""
        if _RANK[level] < self._min_rank:
            return
        clean = {
            (f"field_{k}" if k in ("time", "level", "event") else k): v for k, v in fields.items()
        }
        time = _iso(self._clock())
        if self.format == "json":
            record = {"time": time, "level": level, "event": event, **_plain(clean)}
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        else:
            parts = [time, level.upper().ljust(7), event]
            parts.extend(f"{key}={_text_value(value)}" for key, value in clean.items())
            line = " ".join(parts)
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def debug(self, event: str, /, **fields: Any) -> None:
        self.emit("debug", event, **fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self.emit("error", event, **fields)


_LEVELS: dict[int, Level] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}


class LoggingBridge(logging.Handler):
    """A `logging` handler that writes records as `log` events of an `EventLog`."""

    def __init__(self, log: EventLog, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno, "error" if record.levelno > 40 else "debug")
            self._log.emit(level, "log", logger=record.name, message=record.getMessage())
        except Exception:  # a log line must never take the service down
            self.handleError(record)
