"""Options and small helpers that several commands share, so each command module stays thin."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.actions import Plan
from reconciler.connection import SANDBOX_PROFILE_META
from reconciler.console import Console
from reconciler.render import render_json, render_markdown, render_text
from reconciler.sandbox.profiles import DEFAULT_PROFILE, PROFILES

__all__ = [
    "FORMATS",
    "endpoint_options",
    "format_option",
    "now_ms",
    "render",
    "write_private",
]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "markdown", "json")


def _remember_profile(context: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        context.meta[SANDBOX_PROFILE_META] = value


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
        "--base-url",
        metavar="URL",
        help="API base URL (default $LEVRET_BASE_URL or https://api.levret.io/api/v1).",
    )(command)
    command = click.option(
        "--sandbox",
        is_flag=True,
        help="Use the embedded sandbox (state in .reconciler/sandbox.db, demo account).",
    )(command)
    return command


def visibility_timeout_option(command: F) -> F:
    """`--visibility-timeout`: how long apply waits for the exchange to show its own writes."""
    return click.option(
        "--visibility-timeout",
        default="30s",
        show_default=True,
        help="Wait at most this long for an accepted call to show in the account's reads; "
        "after it, that symbol stops (exit 5) and nothing is sent again.",
    )(command)


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
    if output_format == "json":
        return render_json(plan)
    if output_format == "markdown":
        return render_markdown(plan)
    return render_text(plan, color=console.color)


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
