"""`reconciler watch`: keep the account under watch; report drift, or heal it (`--self-heal`).

The loop, the gates and the service wiring live in `reconciler.watch` (`watcher`, `gates`,
`heal`, `service`); this module only turns options into a `WatchConfig`, a breaker and a log,
and runs it until SIGTERM or Ctrl-C.
The loop, the client and the breaker are imported when the command runs, not for `--help`.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import click

from reconciler.cli.options import (
    endpoint_options,
    lock_options,
    lock_settings,
    parallelism_option,
    parse_duration_ms,
    parse_visibility_timeout,
    visibility_timeout_option,
)
from reconciler.run.connection import STATE_DIR, client_settings, endpoint, lock_scope
from reconciler.watch.eventlog import LOG_FORMATS, LogFormat


def _seconds(text: str, *, name: str, positive: bool = True) -> float:
    ms = parse_duration_ms(text)
    if positive and ms <= 0:
        raise click.BadParameter(f"{name} must be more than 0")
    return ms / 1000


@click.command("watch")
@click.option(
    "-f",
    "--file",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Desired-state YAML file (re-read when it changes).",
)
@endpoint_options
@click.option("--target", multiple=True, metavar="SYMBOL", help="Watch only these symbols.")
@click.option("--self-heal", is_flag=True, help="Apply the plan when drift is found.")
@click.option("--interval", default="60s", show_default=True, help="Full re-read every this.")
@click.option(
    "--debounce",
    default="500ms",
    show_default=True,
    help="Wait this long after an order or position event before re-planning.",
)
@click.option(
    "--market-debounce",
    default="5s",
    show_default=True,
    help="Re-plan on market data at most this often (priced targets only).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="`json`: one JSON object per line.",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics on this port.")
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for /metrics (0.0.0.0 in a container).",
)
@click.option(
    "--max-actions-per-hour",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Breaker: calls self-heal may make in any hour.",
)
@click.option(
    "--max-notional-per-hour",
    type=Decimal,
    default=Decimal(100_000),
    show_default=True,
    help="Breaker: notional (quote currency) self-heal may move in any hour.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Breaker: failed applies in a row before healing stops until restart.",
)
@parallelism_option
@click.option("--max-passes", type=click.IntRange(1, 10), default=3, show_default=True)
@visibility_timeout_option
@lock_options
def watch(
    file: Path,
    sandbox: bool,
    base_url: str | None,
    target: tuple[str, ...],
    self_heal: bool,
    interval: str,
    debounce: str,
    market_debounce: str,
    log_format: LogFormat,
    metrics_port: int | None,
    metrics_host: str,
    max_actions_per_hour: int,
    max_notional_per_hour: Decimal,
    max_failures: int,
    parallelism: int | None,
    max_passes: int,
    visibility_timeout: str | None,
    lock_dsn: str | None,
    lock_timeout: str,
) -> None:
    """Watch the account against FILE until stopped (SIGTERM, Ctrl-C)."""
    import asyncio

    from reconciler.watch.breaker import CircuitBreaker
    from reconciler.watch.config import WatchConfig
    from reconciler.watch.desired_file import DesiredFile
    from reconciler.watch.eventlog import EventLog
    from reconciler.watch.service import serve

    if not max_notional_per_hour.is_finite() or max_notional_per_hour <= 0:
        raise click.BadParameter("must be a positive number", param_hint="--max-notional-per-hour")
    config = WatchConfig(
        self_heal=self_heal,
        interval=_seconds(interval, name="--interval"),
        debounce=_seconds(debounce, name="--debounce", positive=False),
        market_debounce=_seconds(market_debounce, name="--market-debounce", positive=False),
        parallelism=parallelism,
        max_passes=max_passes,
        state_dir=STATE_DIR,
        visibility_timeout=parse_visibility_timeout(visibility_timeout),
        lock=lock_settings(lock_dsn, lock_timeout),
    )
    breaker = CircuitBreaker(
        max_actions=max_actions_per_hour,
        max_notional=max_notional_per_hour,
        max_failures=max_failures,
    )
    desired = DesiredFile(file, target)
    first = desired()  # a bad file stops here: nothing is read or sent
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        settings = client_settings(where, first)
        config = replace(config, lock=replace(config.lock, scope=lock_scope(where)))
        asyncio.run(
            serve(
                settings,
                desired,
                config,
                log=EventLog(log_format),
                breaker=breaker,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
            )
        )
