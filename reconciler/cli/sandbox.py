"""`reconciler sandbox serve`: the Levret emulator in the foreground, for trying things out.

The first line on stdout is `Sandbox listening on http://HOST:PORT`, written once the server
accepts requests, so a script (or a test) can start it with `--port 0` and read the real port
from that line instead of guessing or waiting.

The server (starlette, uvicorn, Socket.IO) is imported when `serve` runs, not for `--help`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from reconciler.sandbox.profiles import DEFAULT_PROFILE, PROFILES
from reconciler.sandbox.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S
from reconciler.sandbox.wirestyle import DEFAULT_WIRE_STYLE, WIRE_STYLES

__all__ = ["sandbox"]

DEFAULT_DB = Path(".reconciler") / "sandbox.db"


@click.group()
def sandbox() -> None:
    """A local emulator of the Levret futures API (REST, signing, stream, faults)."""


@sandbox.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port; 0 picks a free one (printed on the first line).")  # fmt: skip
@click.option("--db", "db_path", default=str(DEFAULT_DB), show_default=True,
              help="SQLite file holding the sandbox state (':memory:' for none).")  # fmt: skip
@click.option("--rate-limit", default=DEFAULT_LIMIT, show_default=True,
              type=click.IntRange(min=1), help="Requests per key per window.")  # fmt: skip
@click.option("--rate-window", default=DEFAULT_WINDOW_S, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Rate-limit window in seconds.")  # fmt: skip
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host. The control API stays loopback-only.")  # fmt: skip
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=DEFAULT_PROFILE,
              show_default=True,
              help="realistic: read lag, a book with depth, partial fills, stop slippage "
                   "(docs/sandbox.md).")  # fmt: skip
@click.option("--wire-style", type=click.Choice(WIRE_STYLES), default=DEFAULT_WIRE_STYLE,
              show_default=True,
              help="Test aid: answer in another response shape (docs/sandbox.md).")  # fmt: skip
def serve(
    host: str,
    port: int,
    db_path: str,
    rate_limit: int,
    rate_window: float,
    allow_remote: bool,
    access_log: bool,
    profile: str,
    wire_style: str,
) -> None:
    """Serve the sandbox until Ctrl-C; state persists in --db across restarts."""
    from reconciler.sandbox.control import is_loopback
    from reconciler.sandbox.server import SandboxServer

    if not is_loopback(host) and not allow_remote:
        raise click.BadParameter(
            f"{host} is not a loopback address; the sandbox has an unsigned control API "
            "(pass --allow-remote if you really mean it)",
            param_hint="--host",
        )
    if db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    server = SandboxServer(
        db_path,
        host=host,
        port=port,
        rate_limit=rate_limit,
        rate_window=rate_window,
        access_log=access_log,
        log_level="info" if access_log else "warning",
        profile=profile,
        wire_style=wire_style,
    )

    def announce(running: SandboxServer) -> None:
        click.echo(f"Sandbox listening on {running.base_url}")
        click.echo(f"API: {running.api_url}  (demo keys: demo-key/demo-secret, demo-read)")
        click.echo(f"Profile: {profile}")
        if wire_style != DEFAULT_WIRE_STYLE:
            click.echo(f"Wire style: {wire_style} (a test aid)")
        click.echo("Press Ctrl-C to stop.")

    # uvicorn re-raises the SIGINT it handled; by then the shutdown was already graceful.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(on_ready=announce)
    click.echo("Sandbox stopped.")
