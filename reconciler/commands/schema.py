"""`reconciler schema`: the JSON Schema of the desired-state file, for editors and CI."""

from __future__ import annotations

import click

from reconciler.commands.options import dump_json
from reconciler.console import Console
from reconciler.spec import json_schema


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of the desired-state file."""
    Console().data(dump_json(json_schema()))
