"""`reconciler schema`: the JSON Schema of the desired-state file, for editors and CI.

The desired-state models are imported when the command runs, not for `schema --help`.
"""

from __future__ import annotations

import click

from reconciler.cli.options import dump_json
from reconciler.cli.session import Session, pass_session


@click.command("schema")
@pass_session
def schema(session: Session) -> None:
    """Print the JSON Schema of the desired-state file."""
    from reconciler.model.desired import json_schema

    session.console.data(dump_json(json_schema()))
