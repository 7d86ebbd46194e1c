"""The desired-state file: typed, frozen models and every check that needs no exchange.

`load(path)` reads the YAML (see `reconciler.yamlsource`), validates it with pydantic and then
with the cross-field rules below, and raises one `SpecError` listing *every* problem as
`file:line:col: field.path: message`. The loaded `DesiredState` keeps the file's marks, so the
checks that need the exchange's symbol specs (`check_against_specs`) can point at lines too.

Numbers are `Decimal` built from the file's own text; a quoted `"0.5"` is a string and is
refused where a number is expected, as is a boolean where a number or a number where a
boolean is expected (no YAML 1.1 `yes`/`on` surprises).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)

from reconciler.defaults import DEFAULT_PARALLELISM
from reconciler.errors import SpecError
from reconciler.model.account import SymbolSpec
from reconciler.model.windows import check_cron
from reconciler.yamlsource import PathKey, SourceDocument, YamlProblem, load_text, load_yaml

__all__ = [
    "Account",
    "ApplySettings",
    "CredentialsEnv",
    "DefaultTolerance",
    "Defaults",
    "DesiredOrder",
    "DesiredPosition",
    "DesiredState",
    "DesiredSymbol",
    "LockSettings",
    "Policy",
    "Tolerance",
    "Windows",
    "check_against_specs",
    "fingerprint",
    "format_path",
    "json_schema",
    "load",
    "loads",
    "semantic_problems",
]

MAX_EXCHANGE_LEVERAGE = 125
# No price, size or amount of any market comes near 10^15 (more USDT than exists, more
# contracts than any exchange lists); beyond it a number is a typo, and the planner's exact
# arithmetic (sizes in steps of 10^-8) would need more digits than it carries.
MAX_NUMBER = Decimal(10) ** 15


def _strict_number(value: Any) -> Any:
    """Numbers only: a string, a boolean or a float is a mistake in a price or a size."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a number")
    number = Decimal(value)
    if abs(number) > MAX_NUMBER:
        raise ValueError(f"{number:.3e} is too large: at most 1e15")
    return number


def _strict_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a whole number")
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError("must be a whole number")
        return int(value)
    return value


Number = Annotated[
    Decimal,
    BeforeValidator(_strict_number),
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
VisibilitySeconds = Annotated[
    Positive,
    Field(le=3600),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 3600}),
]
Leverage = Annotated[
    int,
    BeforeValidator(_strict_integer),
    Field(ge=1, le=MAX_EXCHANGE_LEVERAGE),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_EXCHANGE_LEVERAGE}),
]
SymbolName = Annotated[StrictStr, Field(pattern=r"^[A-Z0-9]+_[A-Z0-9]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class CredentialsEnv(_Model):
    """Names of the environment variables that hold the key; never the key itself."""

    key_id: StrictStr = "LEVRET_API_KEY_ID"
    secret: StrictStr = "LEVRET_API_KEY_SECRET"


class Account(_Model):
    user_id: StrictStr | None = Field(default=None, min_length=1)
    credentials_env: CredentialsEnv | None = None


def _no_default_size(value: Any) -> Any:
    if isinstance(value, dict) and "size" in value:
        raise ValueError(
            "a size tolerance is in contracts, which mean something else on every symbol: "
            "set it per symbol (symbols.<SYMBOL>.tolerance.size), or use notional here"
        )
    return value


class DefaultTolerance(_Model):
    """Differences at or below these are not worth a trade, on every symbol (in USDT)."""

    notional: NonNegative = Decimal(1)
    margin: NonNegative = Decimal(1)


class Tolerance(_Model):
    """One symbol's tolerance: a position difference in contracts (`size`) or in USDT at the
    mark (`notional`), and a margin difference in USDT; unset values fall back to defaults.

    Whatever it says, a different side and a difference of the symbol's minimum size or more are
    never within tolerance.
    """

    size: NonNegative | None = None
    notional: NonNegative | None = None
    margin: NonNegative | None = None


class Defaults(_Model):
    leverage: Leverage = 5
    tolerance: Annotated[DefaultTolerance, BeforeValidator(_no_default_size)] = DefaultTolerance()


class Policy(_Model):
    max_leverage: Leverage | None = None
    max_order_notional: Positive | None = None
    max_gross_notional: Positive | None = None
    allowed_symbols: tuple[SymbolName, ...] | None = None
    unmanaged: Literal["ignore", "close"] = "ignore"
    max_closes: Annotated[int, BeforeValidator(_strict_integer), Field(ge=0)] | None = None
    # Percent of the mark: no position the plan touches may end, or pass, closer to its
    # liquidation price than this.
    min_liquidation_distance: Percent | None = None


class DesiredPosition(_Model):
    """The position wanted on one symbol. TP/SL left out: kept as is; `null`: cleared.

    Absent margin: any. Whether a TP/SL was given is `model_fields_set`, not its value.
    """

    side: Literal["long", "short", "flat"]
    size: Positive | None = None
    notional: Positive | None = None
    weight: Weight | None = None
    leverage: Leverage | None = None
    margin: Positive | None = None
    take_profit: Positive | None = None
    stop_loss: Positive | None = None


class DesiredOrder(_Model):
    """One resting limit order wanted; `leverage` defaults to the symbol's leverage.

    `taker: true` allows an order that crosses the book (it fills at once instead of
    resting); without it such an order is refused.
    """

    side: Literal["buy", "sell"]
    price: Positive
    size: Positive
    leverage: Leverage | None = None
    reduce_only: StrictBool = False
    take_profit: Positive | None = None  # the order's own, for the position it opens
    stop_loss: Positive | None = None
    taker: StrictBool = False


class DesiredSymbol(_Model):
    position: DesiredPosition | None = None
    orders: tuple[DesiredOrder, ...] | None = None
    orders_mode: Literal["authoritative", "additive"] = "authoritative"
    protect: StrictBool = False
    tolerance: Tolerance | None = None


CronExpression = Annotated[StrictStr, AfterValidator(check_cron)]


class Windows(_Model):
    """When `watch --self-heal` may change the account (cron, UTC): `reconciler.model.windows`."""

    allow: tuple[CronExpression, ...] = ()
    deny: tuple[CronExpression, ...] = ()
    pause_until: AwareDatetime | None = None


ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[StrictStr, Field(pattern=ENV_NAME_PATTERN)]


class LockSettings(_Model):
    """Which account lock apply takes (`reconciler.run.lock`); the DSN itself is never here."""

    backend: Literal["file", "postgres"] = "file"
    dsn_env: EnvName = "RECONCILER_LOCK_DSN"


class ApplySettings(_Model):
    """How apply runs against this account; the command line's options win."""

    visibility_timeout: VisibilitySeconds | None = None  # seconds
    # Symbols worked on at once within a phase (`--parallelism`); calls of one symbol stay in order.
    parallelism: Annotated[int, BeforeValidator(_strict_integer), Field(ge=1, le=64)] | None = None


ReservePercent = Annotated[
    Number,
    Field(ge=0, lt=100),
    WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMaximum": 100}),
]


class RateLimitSettings(_Model):
    """The share of the key's request window the reconciler leaves to the key's other clients."""

    reserve: ReservePercent | None = None  # percent of the window; `--rate-reserve` wins


class DesiredState(_Model):
    """The whole file. `symbols` lists the managed symbols; any other symbol is unmanaged."""

    version: Literal[1]
    account: Account = Account()
    defaults: Defaults = Defaults()
    policy: Policy = Policy()
    symbols: dict[SymbolName, DesiredSymbol] = Field(default_factory=dict)
    windows: Windows | None = None
    lock: LockSettings = LockSettings()
    apply: ApplySettings = ApplySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()

    _source: SourceDocument | None = PrivateAttr(default=None)

    # -- derived values the planner shares -------------------------------------------------

    def position_leverage(self, symbol: str) -> int:
        """The leverage wanted for the symbol's position: its own, else the default."""
        entry = self.symbols.get(symbol)
        if entry is not None and entry.position is not None and entry.position.leverage:
            return entry.position.leverage
        return self.defaults.leverage

    def order_leverage(self, symbol: str, order: DesiredOrder) -> int:
        return order.leverage or self.position_leverage(symbol)

    # -- where things are in the file --------------------------------------------------------

    @property
    def filename(self) -> str:
        return self._source.filename if self._source else "<desired>"

    def where(self, path: PathKey) -> str:
        """`file:line:col` of the value at `path`, or of its nearest ancestor in the file."""
        if self._source is None:
            return self.filename
        line, column = self._source.where(path)
        return f"{self.filename}:{line}:{column}"

    def problem(self, path: PathKey, message: str) -> str:
        return f"{self.where(path)}: {format_path(path)}: {message}"


def format_path(path: Iterable[str | int]) -> str:
    """`symbols.BTC_USDT.orders[0].price` from `("symbols", "BTC_USDT", "orders", 0, "price")`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(document)"


# -- loading ------------------------------------------------------------------------------


def load(path: str | Path) -> DesiredState:
    """Read, parse and validate a desired-state file; `SpecError` lists every problem."""
    try:
        source = load_yaml(path)
    except YamlProblem as problem:
        raise SpecError([_yaml_problem_text(str(path), problem)]) from None
    return from_source(source)


def loads(text: str, filename: str = "<string>") -> DesiredState:
    """Like `load`, from text (tests and stdin)."""
    try:
        source = load_text(text, filename)
    except YamlProblem as problem:
        raise SpecError([_yaml_problem_text(filename, problem)]) from None
    return from_source(source)


def from_source(source: SourceDocument) -> DesiredState:
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__ if source.data is not None else "nothing"
        line, column = source.where(())
        raise SpecError(
            [f"{source.filename}:{line}:{column}: (document): must be a mapping, not {kind}"]
        )
    try:
        desired = DesiredState.model_validate(source.data)
    except ValidationError as error:
        raise SpecError(_pydantic_problems(source, error)) from None
    desired._source = source
    problems = semantic_problems(desired)
    if problems:
        raise SpecError(problems)
    return desired


def _yaml_problem_text(filename: str, problem: YamlProblem) -> str:
    where = filename
    if problem.location is not None:
        where = f"{filename}:{problem.location[0]}:{problem.location[1]}"
    return f"{where}: {format_path(problem.path)}: {problem.message}"


_MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "literal_error": "must be {expected}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "tuple_type": "must be a list",
    "string_pattern_mismatch": "must look like BASE_QUOTE in capitals, e.g. BTC_USDT",
    "string_too_short": "must not be empty",
}


def _pydantic_problems(source: SourceDocument, error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        # A dict key that failed its own validation appears as `[key-name, "[key]"]`.
        on_key = kind == "extra_forbidden" or (bool(loc) and loc[-1] == "[key]")
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        path: PathKey = tuple(part for part in loc if isinstance(part, str | int))
        template = _MESSAGES.get(kind)
        context = item.get("ctx") or {}
        if kind == "string_pattern_mismatch" and context.get("pattern") == ENV_NAME_PATTERN:
            template = "must be the name of an environment variable, e.g. RECONCILER_LOCK_DSN"
        if template is not None:
            message = template.format(**{key: str(value) for key, value in context.items()})
        elif kind == "value_error":
            message = str(context.get("error", item["msg"]))
        else:
            message = item["msg"][:1].lower() + item["msg"][1:]
        line, column = source.where(path, key=on_key)
        problems.append(f"{source.filename}:{line}:{column}: {format_path(path)}: {message}")
    return problems


# -- checks that need the whole file ------------------------------------------------------


def semantic_problems(desired: DesiredState) -> list[str]:
    """Cross-field rules pydantic's per-field checks cannot express, each with its place."""
    problems: list[str] = []
    max_leverage = desired.policy.max_leverage
    if max_leverage is not None and desired.defaults.leverage > max_leverage:
        problems.append(
            desired.problem(
                ("defaults", "leverage"), f"{desired.defaults.leverage} exceeds policy.max_leverage"
            )
        )
    lock = desired.lock
    if lock.backend == "file" and "dsn_env" in lock.model_fields_set:
        problems.append(
            desired.problem(("lock", "dsn_env"), "only the postgres backend takes a dsn_env")
        )
    for symbol, entry in desired.symbols.items():
        base: PathKey = ("symbols", symbol)
        tolerance = entry.tolerance
        if tolerance is not None and tolerance.size is not None and tolerance.notional is not None:
            problems.append(
                desired.problem((*base, "tolerance", "notional"), "give only one of size, notional")
            )
        if entry.position is not None:
            problems.extend(_position_problems(desired, (*base, "position"), entry.position))
        for index, order in enumerate(entry.orders or ()):
            if max_leverage is not None and order.leverage and order.leverage > max_leverage:
                problems.append(
                    desired.problem(
                        (*base, "orders", index, "leverage"),
                        f"{order.leverage} exceeds policy.max_leverage {max_leverage}",
                    )
                )
    return problems


def _position_problems(
    desired: DesiredState, path: PathKey, position: DesiredPosition
) -> list[str]:
    problems: list[str] = []
    amounts = [
        name for name in ("size", "notional", "weight") if getattr(position, name) is not None
    ]
    if position.side == "flat":
        for name in (
            "size",
            "notional",
            "weight",
            "leverage",
            "margin",
            "take_profit",
            "stop_loss",
        ):
            if getattr(position, name) is not None:
                problems.append(desired.problem((*path, name), "a flat position takes no " + name))
        return problems
    if not amounts:
        problems.append(desired.problem(path, "give one of size, notional or weight"))
    elif len(amounts) > 1:
        problems.append(
            desired.problem((*path, amounts[1]), f"give only one of {', '.join(amounts)}")
        )
    max_leverage = desired.policy.max_leverage
    if max_leverage is not None and position.leverage and position.leverage > max_leverage:
        problems.append(
            desired.problem(
                (*path, "leverage"),
                f"{position.leverage} exceeds policy.max_leverage {max_leverage}",
            )
        )
    tp, sl = position.take_profit, position.stop_loss
    if tp is not None and sl is not None:
        if position.side == "long" and tp <= sl:
            problems.append(
                desired.problem(
                    (*path, "take_profit"), "a long's take_profit must be above stop_loss"
                )
            )
        if position.side == "short" and tp >= sl:
            problems.append(
                desired.problem(
                    (*path, "take_profit"), "a short's take_profit must be below stop_loss"
                )
            )
    return problems


def check_against_specs(desired: DesiredState, specs: Mapping[str, SymbolSpec]) -> list[str]:
    """Problems of the file against the exchange's symbol specs: existence, steps, ticks."""
    problems: list[str] = []
    for symbol, entry in desired.symbols.items():
        base: PathKey = ("symbols", symbol)
        spec = specs.get(symbol)
        if spec is None:
            problems.append(desired.problem(base, "the exchange does not list this symbol"))
            continue
        if spec.status != "trading":
            problems.append(desired.problem(base, f"the symbol is {spec.status}"))
        leverage = desired.position_leverage(symbol)
        if leverage > spec.max_leverage:
            where: PathKey = (*base, "position", "leverage")
            if entry.position is None or entry.position.leverage is None:
                where = ("defaults", "leverage")
            problems.append(
                desired.problem(
                    where, f"{leverage} exceeds {symbol}'s max leverage {spec.max_leverage}"
                )
            )
        position = entry.position
        if position is not None:
            path = (*base, "position")
            if position.size is not None:
                problems.extend(_size_problems(desired, (*path, "size"), position.size, spec))
            for name in ("take_profit", "stop_loss"):
                price = getattr(position, name)
                if price is not None:
                    problems.extend(_price_problems(desired, (*path, name), price, spec))
        for index, order in enumerate(entry.orders or ()):
            path = (*base, "orders", index)
            problems.extend(_size_problems(desired, (*path, "size"), order.size, spec))
            problems.extend(_price_problems(desired, (*path, "price"), order.price, spec))
            for name in ("take_profit", "stop_loss"):
                trigger = getattr(order, name)
                if trigger is not None:
                    problems.extend(_price_problems(desired, (*path, name), trigger, spec))
            if order.leverage and order.leverage > spec.max_leverage:
                problems.append(
                    desired.problem(
                        (*path, "leverage"),
                        f"{order.leverage} exceeds {symbol}'s max leverage {spec.max_leverage}",
                    )
                )
    return problems


def _size_problems(
    desired: DesiredState, path: PathKey, size: Decimal, spec: SymbolSpec
) -> list[str]:
    problems: list[str] = []
    if size % spec.step_size != 0:
        problems.append(
            desired.problem(path, f"{size} is not a multiple of the size step {spec.step_size}")
        )
    if size < spec.min_size:
        problems.append(desired.problem(path, f"{size} is below the minimum size {spec.min_size}"))
    return problems


def _price_problems(
    desired: DesiredState, path: PathKey, price: Decimal, spec: SymbolSpec
) -> list[str]:
    if price % spec.tick_size != 0:
        return [
            desired.problem(path, f"{price} is not a multiple of the tick size {spec.tick_size}")
        ]
    return []


def json_schema() -> dict[str, Any]:
    """JSON Schema of the file, for editors (`# yaml-language-server: $schema=...`)."""
    from reconciler.model.desired_schema import with_documentation  # it reads this module's models

    schema = DesiredState.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Levret reconciler desired state"
    return with_documentation(schema)


def fingerprint(desired: DesiredState) -> str:
    """SHA-256 of what the file asks for, not how it is written (comments, order, spelling).

    `lock`, `apply` and `rate_limit` say how apply runs, not what the account should hold:
    changing them
    between plan and apply does not make a saved plan stale. A TP/SL left out (kept) is not
    `null` (cleared).
    """
    data = desired.model_dump(mode="json", exclude={"lock", "apply", "rate_limit"})
    for symbol, entry in desired.symbols.items():
        if entry.position is not None:
            for name in ("take_profit", "stop_loss"):
                if name not in entry.position.model_fields_set:
                    data["symbols"][symbol]["position"][name] = "keep"
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def chosen_parallelism(desired: DesiredState, option: int | None) -> int:
    """`--parallelism`, else the file's `apply.parallelism`, else the default (16)."""
    if option is not None:
        return option
    return desired.apply.parallelism or DEFAULT_PARALLELISM
