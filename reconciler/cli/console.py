"""All terminal output goes through one `Console`, so colour, TTY and verbosity are decided once.

Data (a plan as JSON or markdown, an imported file) goes to stdout alone, so
`reconciler plan --format json > plan.json` is always valid JSON. Everything a person reads
while waiting (progress, notes, warnings, errors) goes to stderr.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["FORCE_COLOR_ENV", "NO_COLOR_ENV", "Console", "OutputStyle", "set_output_style"]

NO_COLOR_ENV = "NO_COLOR"
FORCE_COLOR_ENV = "FORCE_COLOR"


@dataclass
class OutputStyle:
    """The global `-q/--quiet` and `--no-color` flags, set once by the `reconciler` group."""

    quiet: bool = False
    no_color: bool = False


_STYLE = OutputStyle()


def set_output_style(*, quiet: bool, no_color: bool) -> None:
    """Called by the CLI group before any command builds its `Console`."""
    _STYLE.quiet = quiet
    _STYLE.no_color = no_color


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass
class Console:
    verbosity: int = 0
    quiet: bool = field(default_factory=lambda: _STYLE.quiet)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def color(self) -> bool:
        """Colour on a terminal; `--no-color` and `NO_COLOR` turn it off, `FORCE_COLOR` on.

        The order follows no-color.org and force-color.org: a request for no colour always
        wins, so a CI log that sets both stays plain.
        """
        if _STYLE.no_color or os.environ.get(NO_COLOR_ENV):
            return False
        if os.environ.get(FORCE_COLOR_ENV):
            return True
        return _is_tty(self.out)

    @property
    def interactive(self) -> bool:
        """A person is watching stderr: draw a progress bar instead of plain log lines."""
        return _is_tty(self.err) and not os.environ.get("CI")

    def data(self, text: str) -> None:
        """The command's result, on stdout."""
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.err.write(text + "\n")
            self.err.flush()

    def detail(self, text: str) -> None:
        if self.verbosity > 0:
            self.note(text)

    def error(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()
