"""Where the command line writes: results on stdout, progress, logs and errors on stderr.

Neither console parses rich markup (paths and messages may hold [brackets]) or wraps long
lines: a log or a pipe needs whole lines, and a terminal wraps them itself. Tables sent to a
pipe get a wide page rather than being squeezed into 80 columns.
"""

from __future__ import annotations

import logging
import traceback

from rich.console import Console

from derain.cli.flags import as_flags

PIPED_WIDTH = 160


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, markup=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, PIPED_WIDTH)
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def error(message: str) -> None:
    err.print(f"derain: error: {as_flags(message)}", style="red")


def traceback_of(failure: BaseException) -> None:
    """The traceback behind a one-line error (--debug)."""
    err.print("".join(traceback.format_exception(failure)).rstrip(), style="dim")


def warn(message: str) -> None:
    err.print(f"derain: {as_flags(message)}", style="yellow")


class LogHandler(logging.Handler):
    """The library's `derain` logger, shown as dim lines (warnings in yellow) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else "dim"
        err.print(as_flags(self.format(record)), style=style)
