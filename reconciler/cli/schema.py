"""`reconciler schema`: the JSON Schema of the desired-state file, for editors and CI.

The desired-state models are imported when the command runs, not for `schema --help`.
"""

from __future__ import annotations

import click

from reconciler.cli.console import Console
from reconciler.cli.options import dump_json


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of the desired-state file."""
    from reconciler.model.desired import json_schema

    Console().data(dump_json(json_schema()))
