"""A fault profile: which faults are on and how strongly, as `POST /_sandbox/faults` sets it.

The kinds and their effects are described in `faults.py`; here is only their shape: one
field per kind on `FaultProfile`, and one parser per field in `_FIELDS`, which validates a
body strictly (unknown keys are refused, so a typo cannot hide a fault that is not on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

__all__ = ["FaultProfile", "Hold"]


@dataclass(frozen=True)
class Hold:
    """Which mutating requests wait for `POST /_sandbox/release`, and on which side of execution."""

    when: str = "after"
    path: str = "/order"
    count: int = 1


@dataclass(frozen=True)
class FaultProfile:
    seed: int = 0
    fail_before: float = 0.0
    drop_before: float = 0.0
    drop_after_commit: float = 0.0
    garbage_after_commit: float = 0.0
    latency_ms: tuple[int, int] = (0, 0)
    clock_skew_ms: int = 0
    clock_jump_ms: int = 0
    clock_jump_after: int = 0
    partial_fills: bool = False
    instant_fills: bool = False
    fill_before_cancel: float = 0.0
    invisible_ms: int = 0
    read_lag_ms: int = 0
    book_depth: bool = False
    resting_partial_fills: bool = False
    stop_slippage: bool = False
    storm_429: float = 0.0
    storm_length: int = 3
    page_shift: float = 0.0
    mark_jump: float = 0.0
    mark_jump_bps: int = 200
    liquidate: float = 0.0
    hold: Hold | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The profile in the shape it is set with.

        The original kinds are always listed; later ones only when set, so tools that compare
        the whole answer with what they set keep working.
        """
        data = asdict(self)
        data.pop("extra")
        data["latency_ms"] = list(self.latency_ms)
        defaults = asdict(FaultProfile())
        return {
            key: value
            for key, value in data.items()
            if key in _ALWAYS_SHOWN or value != defaults[key]
        }

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> FaultProfile:
        """Validate a `POST /_sandbox/faults` body; unknown keys are refused (typos hide)."""
        profile = cls()
        for name, value in body.items():
            parser = _FIELDS.get(name)
            if parser is None:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(_FIELDS))}")
            profile = replace(profile, **{name: parser(name, value)})
        return profile


_ALWAYS_SHOWN = frozenset(
    {"seed", "fail_before", "drop_after_commit", "latency_ms", "clock_skew_ms", "partial_fills"}
)


def _probability(name: str, value: Any) -> float:
    number = _number(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must be a probability between 0 and 1")
    return float(number)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _bounded(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        number = _integer(name, value)
        if not low <= number <= high:
            raise ValueError(f"{name} must be between {low} and {high}")
        return number

    return parse


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _latency(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{name} must be [low, high] in milliseconds")
    low, high = (_integer(name, item) for item in value)
    if not 0 <= low <= high <= 60_000:
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= 60000")
    return low, high


def _hold(name: str, value: Any) -> Hold | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"when", "path", "count"}:
        raise ValueError(
            f'{name} must be {{"when": "before"|"delay"|"after", "path": ..., "count": n}}'
        )
    when = value.get("when", "after")
    path = value.get("path", "/order")
    count = _bounded(1, 1000)(name, value.get("count", 1))
    if when not in ("before", "delay", "after") or not isinstance(path, str):
        raise ValueError(f'{name}: "when" is before, delay or after; "path" starts with /')
    if not path.startswith("/"):
        raise ValueError(f'{name}: "when" is before, delay or after; "path" starts with /')
    return Hold(when, path, count)


def _number(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ValueError(f"{name} must be a number")
    return Decimal(value)


_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "seed": _integer,
    "fail_before": _probability,
    "drop_before": _probability,
    "drop_after_commit": _probability,
    "garbage_after_commit": _probability,
    "latency_ms": _latency,
    "clock_skew_ms": _integer,
    "clock_jump_ms": _integer,
    "clock_jump_after": _bounded(0, 10**9),
    "partial_fills": _boolean,
    "instant_fills": _boolean,
    "fill_before_cancel": _probability,
    "invisible_ms": _bounded(0, 600_000),
    "read_lag_ms": _bounded(0, 60_000),
    "book_depth": _boolean,
    "resting_partial_fills": _boolean,
    "stop_slippage": _boolean,
    "storm_429": _probability,
    "storm_length": _bounded(1, 100),
    "page_shift": _probability,
    "mark_jump": _probability,
    "mark_jump_bps": _bounded(1, 5_000),
    "liquidate": _probability,
    "hold": _hold,
}
