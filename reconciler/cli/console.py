"""All terminal output goes through one `Console`, so colour, TTY and verbosity are decided once.

The `reconciler` group builds it from `-v`, `-q`, `--no-color`, `NO_COLOR`/`FORCE_COLOR` and
whether stdout and stderr are terminals, before any command runs, and hands it to every
command (`reconciler.cli.session`); no command builds its own, so a global flag reaches all.

Data (a plan as JSON or markdown, an imported file) goes to stdout alone, so
`reconciler plan --format json > plan.json` is always valid JSON. Everything a person reads
while waiting (progress, notes, warnings, errors) goes to stderr; `-q` keeps only errors.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["FORCE_COLOR_ENV", "NO_COLOR_ENV", "Console"]

NO_COLOR_ENV = "NO_COLOR"
FORCE_COLOR_ENV = "FORCE_COLOR"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Discard(io.StringIO):
    """Where notes go under `--quiet`: a stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


@dataclass(frozen=True)
class Console:
    """The run's output: its two streams and what was decided about them, once."""

    out: TextIO
    err: TextIO
    verbosity: int = 0
    quiet: bool = False
    color: bool = False
    """Colour plans on stdout (ANSI escapes); see `build` for how it is decided."""
    interactive: bool = False
    """A person is watching stderr: draw a progress bar instead of plain log lines."""

    @classmethod
    def build(
        cls,
        *,
        verbosity: int = 0,
        quiet: bool = False,
        no_color: bool = False,
        environ: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> Console:
        """The console of the global flags, the environment and the process's streams.

        Colour on a terminal; `--no-color` and `NO_COLOR` turn it off, `FORCE_COLOR` on. The
        order follows no-color.org and force-color.org: a request for no colour always wins,
        so a CI log that sets both stays plain. A progress bar only on a terminal's stderr,
        and never under `CI` (a CI log would keep every redraw).
        """
        env = os.environ if environ is None else environ
        out = sys.stdout if out is None else out
        err = sys.stderr if err is None else err
        if no_color or env.get(NO_COLOR_ENV):
            color = False
        elif env.get(FORCE_COLOR_ENV):
            color = True
        else:
            color = _is_tty(out)
        return cls(
            out=out,
            err=err,
            verbosity=verbosity,
            quiet=quiet,
            color=color,
            interactive=_is_tty(err) and not env.get("CI"),
        )

    @property
    def notes(self) -> TextIO:
        """The stream for what a person reads while waiting (progress lines): stderr, or
        nowhere under `--quiet`."""
        return _Discard() if self.quiet else self.err

    def data(self, text: str) -> None:
        """The command's result, on stdout."""
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Something a person reads while waiting, on stderr; `--quiet` drops it."""
        if not self.quiet:
            self.err.write(text + "\n")
            self.err.flush()

    def detail(self, text: str) -> None:
        """A note only for `-v` and more."""
        if self.verbosity > 0:
            self.note(text)

    def error(self, text: str) -> None:
        """An error, on stderr: never dropped, whatever `--quiet` says."""
        self.err.write(text + "\n")
        self.err.flush()
