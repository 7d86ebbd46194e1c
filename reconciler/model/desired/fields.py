"""The value types of the desired-state file, shared by all its sections.

A price, a size or a leverage typed wrong in this file moves money, so every number is
strict: `Decimal` built from the file's own text, never a quoted `"0.5"` (a string), a
boolean or a float. Each bounded type states its bounds in the JSON Schema too, so an editor
refuses what `validate` refuses. Every section is a `FileModel`: frozen, and an unknown key
is an error rather than a silently ignored typo.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    WithJsonSchema,
)

from reconciler.model.windows import check_cron

__all__ = [
    "ENV_NAME_PATTERN",
    "MAX_EXCHANGE_LEVERAGE",
    "MAX_NUMBER",
    "CronExpression",
    "EnvName",
    "FileModel",
    "Leverage",
    "NonNegative",
    "Number",
    "Percent",
    "Positive",
    "ReservePercent",
    "SymbolName",
    "VisibilitySeconds",
    "Weight",
    "strict_integer",
    "strict_number",
]

MAX_EXCHANGE_LEVERAGE = 125
# No price, size or amount of any market comes near 10^15 (more USDT than exists, more
# contracts than any exchange lists); beyond it a number is a typo, and the planner's exact
# arithmetic (sizes in steps of 10^-8) would need more digits than it carries.
MAX_NUMBER = Decimal(10) ** 15


def strict_number(value: Any) -> Any:
    """Numbers only: a string, a boolean or a float is a mistake in a price or a size."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a number")
    number = Decimal(value)
    if abs(number) > MAX_NUMBER:
        raise ValueError(f"{number:.3e} is too large: at most 1e15")
    return number


def strict_integer(value: Any) -> Any:
    """Whole numbers only: `2.0` written as such is accepted, `2.5`, `"2"` and `true` are not."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a whole number")
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError("must be a whole number")
        return int(value)
    return value


Number = Annotated[
    Decimal,
    BeforeValidator(strict_number),
    WithJsonSchema({"type": "number", "maximum": 10**15}),
]
# Each bounded number states its bounds in the JSON Schema too (a bare `Number` schema would
# replace pydantic's own), so an editor refuses what `validate` refuses.
Positive = Annotated[
    Number,
    Field(gt=0),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 10**15}),
]
NonNegative = Annotated[
    Number, Field(ge=0), WithJsonSchema({"type": "number", "minimum": 0, "maximum": 10**15})
]
Weight = Annotated[
    Number,
    Field(gt=0, le=1),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
]
Percent = Annotated[
    Number,
    Field(gt=0, lt=100),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}),
]
ReservePercent = Annotated[
    Number,
    Field(ge=0, lt=100),
    WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMaximum": 100}),
]
VisibilitySeconds = Annotated[
    Positive,
    Field(le=3600),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 3600}),
]
Leverage = Annotated[
    int,
    BeforeValidator(strict_integer),
    Field(ge=1, le=MAX_EXCHANGE_LEVERAGE),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_EXCHANGE_LEVERAGE}),
]
SymbolName = Annotated[StrictStr, Field(pattern=r"^[A-Z0-9]+_[A-Z0-9]+$")]
CronExpression = Annotated[StrictStr, AfterValidator(check_cron)]

# Loading names this pattern's mismatch in words (`reconciler.model.desired.loading`).
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[StrictStr, Field(pattern=ENV_NAME_PATTERN)]


class FileModel(BaseModel):
    """A section of the file: frozen once loaded, and an unknown key is refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
