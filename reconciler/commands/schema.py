"""`reconciler schema`: the JSON Schema of the desired-state file, for editors and CI.

The desired-state models are imported when the command runs, not for `schema --help`.
"""

from __future__ import annotations

import click

from reconciler.commands.options import dump_json
from reconciler.console import Console


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of the desired-state file."""
    from reconciler.spec import json_schema

    Console().data(dump_json(json_schema()))
