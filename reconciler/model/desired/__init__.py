"""The desired-state file: typed, frozen models and every check that needs no exchange.

`load(path)` reads the YAML (see `reconciler.yamlsource`), validates it with pydantic and then
with the cross-field rules, and raises one `SpecError` listing *every* problem as
`file:line:col: field.path: message`. The loaded `DesiredState` keeps the file's marks, so the
checks that need the exchange's symbol specs (`check_against_specs`) can point at lines too.

Numbers are `Decimal` built from the file's own text; a quoted `"0.5"` is a string and is
refused where a number is expected, as is a boolean where a number or a number where a
boolean is expected (no YAML 1.1 `yes`/`on` surprises).

This package is the public entry: callers import every name from here. Its modules, one
concept each:

- `fields`: the strict value types (numbers, leverage, symbol names) and the base model;
- `symbols`: one symbol's position, orders and tolerance;
- `sections`: the account-wide sections (account, defaults, policy, windows, lock, apply,
  rate limit);
- `state`: the whole file as `DesiredState`, its derived values and its `fingerprint`;
- `loading`: YAML text or file to models, every error named by file, line and field;
- `checks`: the rules across fields and against the exchange's symbol specs;
- `schema`: the JSON Schema for editors.
"""

from __future__ import annotations

from reconciler.model.desired.checks import check_against_specs, semantic_problems
from reconciler.model.desired.fields import (
    ENV_NAME_PATTERN,
    MAX_EXCHANGE_LEVERAGE,
    MAX_NUMBER,
    CronExpression,
    EnvName,
    Leverage,
    NonNegative,
    Number,
    Percent,
    Positive,
    ReservePercent,
    SymbolName,
    VisibilitySeconds,
    Weight,
)
from reconciler.model.desired.loading import from_source, load, loads
from reconciler.model.desired.schema import json_schema
from reconciler.model.desired.sections import (
    Account,
    ApplySettings,
    CredentialsEnv,
    Defaults,
    DefaultTolerance,
    LockSettings,
    Policy,
    RateLimitSettings,
    Windows,
)
from reconciler.model.desired.state import (
    DesiredState,
    chosen_parallelism,
    fingerprint,
    format_path,
)
from reconciler.model.desired.symbols import DesiredOrder, DesiredPosition, DesiredSymbol, Tolerance

__all__ = [
    "ENV_NAME_PATTERN",
    "MAX_EXCHANGE_LEVERAGE",
    "MAX_NUMBER",
    "Account",
    "ApplySettings",
    "CredentialsEnv",
    "CronExpression",
    "DefaultTolerance",
    "Defaults",
    "DesiredOrder",
    "DesiredPosition",
    "DesiredState",
    "DesiredSymbol",
    "EnvName",
    "Leverage",
    "LockSettings",
    "NonNegative",
    "Number",
    "Percent",
    "Policy",
    "Positive",
    "RateLimitSettings",
    "ReservePercent",
    "SymbolName",
    "Tolerance",
    "VisibilitySeconds",
    "Weight",
    "Windows",
    "check_against_specs",
    "chosen_parallelism",
    "fingerprint",
    "format_path",
    "from_source",
    "json_schema",
    "load",
    "loads",
    "semantic_problems",
]
