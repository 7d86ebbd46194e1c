"""The account-wide sections of the desired-state file: who, defaults, policy, when, how.

`account`, `defaults` and `policy` shape every plan; `windows` says when `watch --self-heal`
may change the account; `lock`, `apply` and `rate_limit` say how apply runs, not what the
account should hold (so `fingerprint` leaves them out). A class docstring here is also the
section's description in the JSON Schema.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, StrictStr

from reconciler.model.desired.fields import (
    CronExpression,
    EnvName,
    FileModel,
    Leverage,
    NonNegative,
    Percent,
    Positive,
    ReservePercent,
    SymbolName,
    VisibilitySeconds,
    strict_integer,
)

__all__ = [
    "Account",
    "ApplySettings",
    "CredentialsEnv",
    "DefaultTolerance",
    "Defaults",
    "LockSettings",
    "Policy",
    "RateLimitSettings",
    "Windows",
]


class CredentialsEnv(FileModel):
    """Names of the environment variables that hold the key; never the key itself."""

    key_id: StrictStr = "LEVRET_API_KEY_ID"
    secret: StrictStr = "LEVRET_API_KEY_SECRET"


class Account(FileModel):
    user_id: StrictStr | None = Field(default=None, min_length=1)
    credentials_env: CredentialsEnv | None = None


def _no_default_size(value: Any) -> Any:
    if isinstance(value, dict) and "size" in value:
        raise ValueError(
            "a size tolerance is in contracts, which mean something else on every symbol: "
            "set it per symbol (symbols.<SYMBOL>.tolerance.size), or use notional here"
        )
    return value


class DefaultTolerance(FileModel):
    """Differences at or below these are not worth a trade, on every symbol (in USDT)."""

    notional: NonNegative = Decimal(1)
    margin: NonNegative = Decimal(1)


class Defaults(FileModel):
    leverage: Leverage = 5
    tolerance: Annotated[DefaultTolerance, BeforeValidator(_no_default_size)] = DefaultTolerance()


class Policy(FileModel):
    max_leverage: Leverage | None = None
    max_order_notional: Positive | None = None
    max_gross_notional: Positive | None = None
    allowed_symbols: tuple[SymbolName, ...] | None = None
    unmanaged: Literal["ignore", "close"] = "ignore"
    max_closes: Annotated[int, BeforeValidator(strict_integer), Field(ge=0)] | None = None
    # Percent of the mark: no position the plan touches may end, or pass, closer to its
    # liquidation price than this.
    min_liquidation_distance: Percent | None = None


class Windows(FileModel):
    """When `watch --self-heal` may change the account (cron, UTC): `reconciler.model.windows`."""

    allow: tuple[CronExpression, ...] = ()
    deny: tuple[CronExpression, ...] = ()
    pause_until: AwareDatetime | None = None


class LockSettings(FileModel):
    """Which account lock apply takes (`reconciler.run.lock`); the DSN itself is never here."""

    backend: Literal["file", "postgres"] = "file"
    dsn_env: EnvName = "RECONCILER_LOCK_DSN"


class ApplySettings(FileModel):
    """How apply runs against this account; the command line's options win."""

    visibility_timeout: VisibilitySeconds | None = None  # seconds
    # Symbols worked on at once within a phase (`--parallelism`); calls of one symbol stay in order.
    parallelism: Annotated[int, BeforeValidator(strict_integer), Field(ge=1, le=64)] | None = None


class RateLimitSettings(FileModel):
    """The share of the key's request window the reconciler leaves to the key's other clients."""

    reserve: ReservePercent | None = None  # percent of the window; `--rate-reserve` wins
