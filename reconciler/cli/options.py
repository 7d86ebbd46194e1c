"""Options and small helpers that several commands share, so each command module stays thin.

Every command's `--help` loads this module: it imports click and light modules only, and
the plan renderers and the lock's settings inside the helpers that use them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.defaults import DEFAULT_PARALLELISM, ENV_LOCK_DSN
from reconciler.run.connection import RATE_RESERVE_META, SANDBOX_PROFILE_META
from reconciler.sandbox.profiles import DEFAULT_PROFILE, PROFILES

if TYPE_CHECKING:
    from reconciler.cli.console import Console
    from reconciler.model.plan import Plan
    from reconciler.run.lock import LockOptions

__all__ = [
    "FORMATS",
    "endpoint_options",
    "format_option",
    "lock_options",
    "lock_settings",
    "now_ms",
    "parse_duration_ms",
    "render",
    "write_private",
]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "markdown", "json")


def _remember_profile(context: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        context.meta[SANDBOX_PROFILE_META] = value


def _remember_reserve(context: click.Context, _: click.Parameter, value: float | None) -> None:
    if value is not None:
        context.meta[RATE_RESERVE_META] = value


def endpoint_options(command: F) -> F:
    """`--sandbox` / `--base-url` / `--sandbox-profile`: where to send the calls.

    `--sandbox-profile` is not passed to the command: `connection.endpoint` reads it from
    the click context, so no command has to carry it along.
    """
    command = click.option(
        "--sandbox-profile",
        type=click.Choice(sorted(PROFILES)),
        default=None,
        expose_value=False,
        callback=_remember_profile,
        help=f"Profile of the embedded sandbox (default {DEFAULT_PROFILE}; realistic: read "
        "lag, a book with depth, partial fills, stop slippage).",
    )(command)
    command = click.option(
        "--rate-reserve",
        type=click.FloatRange(0, 100, max_open=True),
        default=None,
        expose_value=False,
        callback=_remember_reserve,
        metavar="PERCENT",
        help="Share of the key's request window left to its other clients (default the "
        "file's rate_limit.reserve, else 10).",
    )(command)
    command = click.option(
        "--base-url",
        metavar="URL",
        help="API base URL (default $LEVRET_BASE_URL, else the exchange's production API).",
    )(command)
    command = click.option(
        "--sandbox",
        is_flag=True,
        help="Use the embedded sandbox (state in .reconciler/sandbox.db, demo account).",
    )(command)
    return command


def parallelism_option(command: F) -> F:
    """`--parallelism`: symbols worked on at once within a phase (apply and watch)."""
    return click.option(
        "--parallelism",
        type=click.IntRange(1, 64),
        default=None,
        help="Symbols worked on at once in a phase (default the file's apply.parallelism, "
        f"else {DEFAULT_PARALLELISM}).",
    )(command)


def visibility_timeout_option(command: F) -> F:
    """`--visibility-timeout`: how long apply waits for the exchange to show its own writes."""
    return click.option(
        "--visibility-timeout",
        metavar="DURATION",
        help="Wait at most this long for an accepted call to show in the account's reads; "
        "after it, that symbol stops (exit 5) and nothing is sent again "
        "(default: the file's apply.visibility_timeout, else 30s).",
    )(command)


def parse_visibility_timeout(text: str | None) -> float | None:
    """`--visibility-timeout` in seconds; None when not given (the file's, else 30 s)."""
    return None if text is None else parse_duration_ms(text) / 1000


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str) -> int:
    """`15m`, `90s`, `1h`, `500ms`; a bare number is seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 15m, 90s or 1h")
    value, unit = match.groups()
    return int(Decimal(value) * _UNIT_MS[unit or "s"])


def lock_options(command: F) -> F:
    """`--lock-dsn` / `--lock-timeout`: which account lock, and how long to wait for it."""
    command = click.option(
        "--lock-timeout",
        default="0",
        show_default=True,
        metavar="DURATION",
        help="Wait this long for the account lock (0: exit 6 at once if it is held).",
    )(command)
    command = click.option(
        "--lock-dsn",
        metavar="DSN",
        help=(
            "PostgreSQL server for a lock shared by every runner (a secret: prefer "
            f"${ENV_LOCK_DSN}, or lock.dsn_env in the file)."
        ),
    )(command)
    return command


def lock_settings(lock_dsn: str | None, lock_timeout: str) -> LockOptions:
    """The `LockOptions` of `--lock-dsn` and `--lock-timeout`."""
    from pydantic import SecretStr

    from reconciler.run.lock import LockOptions

    try:
        timeout_ms = parse_duration_ms(lock_timeout)
    except click.BadParameter as error:
        error.param_hint = "--lock-timeout"
        raise
    return LockOptions(dsn=SecretStr(lock_dsn) if lock_dsn else None, timeout_s=timeout_ms / 1000)


def format_option(command: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="How to render the plan.",
    )(command)


def render(plan: Plan, output_format: str, console: Console) -> str:
    from reconciler.levret.requests import calls_for
    from reconciler.render.plan import render_json, render_markdown, render_text

    call_of = calls_for(plan.user_id)
    if output_format == "json":
        return render_json(plan, call_of=call_of)
    if output_format == "markdown":
        return render_markdown(plan, call_of=call_of)
    return render_text(plan, call_of=call_of, color=console.color)


def now_ms() -> int:
    return int(time.time() * 1000)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: plans describe a trading account."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"
