"""`reconciler import`: write a desired-state file that matches the live account.

The client, the reader and the models are imported when the command runs, not for
`import --help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.options import endpoint_options, write_private
from reconciler.cli.session import Session, pass_session
from reconciler.run.connection import client_settings, endpoint

if TYPE_CHECKING:
    from reconciler.levret.settings import ClientSettings
    from reconciler.model.snapshot import Snapshot

HEADER = (
    "# Written by `reconciler import`: the account as it was; edit it to say what you want.\n"
    "# Editor completion: `reconciler schema > schema.json`, then add the line\n"
    "# `# yaml-language-server: $schema=./schema.json` at the top of this file.\n"
)


async def _read(settings: ClientSettings, symbols: tuple[str, ...]) -> Snapshot:
    from reconciler.levret.client import LevretClient
    from reconciler.levret.reader import read_snapshot
    from reconciler.model.desired import DesiredState

    nothing_wanted = DesiredState(version=1)
    async with LevretClient(settings) as client:
        return await read_snapshot(client, nothing_wanted, symbols=symbols or None)


@click.command("import")
@endpoint_options
@click.option("--symbol", "symbols", multiple=True, metavar="SYMBOL", help="Only these symbols.")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the file here (default stdout).",
)
@click.option("--user-id", help="The account's user id (default $LEVRET_USER_ID, or demo).")
@pass_session
def import_(
    session: Session,
    sandbox: bool,
    base_url: str | None,
    symbols: tuple[str, ...],
    out: Path | None,
    user_id: str | None,
) -> None:
    """Write a desired-state file that matches the live account."""
    import asyncio

    from reconciler.model.desired import DesiredState
    from reconciler.plan.importer import desired_document, dump_yaml

    console = session.console
    account = DesiredState.model_validate({"version": 1, "account": {"user_id": user_id}})
    with endpoint(sandbox=sandbox, base_url=base_url) as where:
        snapshot = asyncio.run(_read(client_settings(where, account), symbols))
    text = dump_yaml(desired_document(snapshot, symbols or None), header=HEADER)
    if out is None:
        console.data(text)
    else:
        write_private(out, text)
        console.note(f"Wrote {out} ({len(snapshot.live_symbols())} live symbol(s)).")
