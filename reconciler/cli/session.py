"""What the `reconciler` group decided for this run, handed to every command as click's `obj`.

The group builds one `Session` from its global flags before any command runs; a command takes
it with `@pass_session` (its first parameter) instead of reading flags or building a console
of its own, so `-v`, `-q` and `--no-color` mean the same in every command.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

from reconciler.cli.console import Console

__all__ = ["Session", "pass_session"]


@dataclass(frozen=True)
class Session:
    """The run's one console and its verbosity (`-v` counted: 1 what is done, 2 every try)."""

    console: Console

    @property
    def verbosity(self) -> int:
        return self.console.verbosity


pass_session = click.make_pass_decorator(Session)
"""`@pass_session`: the command's first parameter is the run's `Session` (found up the contexts,
so a subgroup may keep its own `obj`)."""
