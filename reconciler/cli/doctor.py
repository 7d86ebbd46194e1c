"""`reconciler doctor`: check, read-only, that the exchange answers in a shape we can read.

Exit 0 when everything the reconciler needs was understood, 1 otherwise (the report says
what). See `reconciler.levret.doctor` for what is checked and the bounds it keeps; it (and the
client, and asyncio) is imported when the command runs, so `doctor --help` stays light.
"""

from __future__ import annotations

import click

from reconciler.cli.options import endpoint_options
from reconciler.cli.session import Session, pass_session
from reconciler.errors import ReconcilerError
from reconciler.run.connection import client_settings, endpoint

__all__ = ["doctor"]


class DoctorFailed(ReconcilerError):
    """Something the reconciler needs was not understood (exit 1; the report says what)."""


@click.command("doctor")
@endpoint_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="How to render the report.",
)
@click.option(
    "--stream-wait",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for one Socket.IO event after the handshake.",
)
@pass_session
def doctor(
    session: Session, sandbox: bool, base_url: str | None, output_format: str, stream_wait: float
) -> None:
    """Read-only check of signing, clock, rate limits, every read's shape and the stream."""
    import asyncio
    import json

    from reconciler.levret.doctor import diagnose, render_text

    console = session.console
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        settings = client_settings(where)
        report = asyncio.run(diagnose(settings, stream_wait_s=stream_wait))
    if output_format == "json":
        console.data(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        console.data(render_text(report))
    if not report.ok:
        raise DoctorFailed("the exchange's answers were not all understood (see the report)")
