"""The `derain` command line: the library's only edge.

Each command is a module here with `add_parser` and `run`. Only this package knows about
flags, argparse, exit codes and the console; the work is `import derain`'s. The parsers import
nothing heavy, so `derain --help` and `derain COMMAND --help` never load torch, and the
library is imported when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence

COMMANDS = ("video", "live", "image", "batch", "eval", "bench", "demo", "weights", "export", "train")
# Errors whose message is already one line that says what to do (beside derain.DerainError).
OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Remove rain from images and video with BRN.")
    parser.add_argument("--debug", action="store_true", help="show the traceback behind an error (or set DERAIN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"derain.cli.{name}").add_parser(sub)
    return parser


def is_user_error(err: BaseException) -> bool:
    """An error whose one-line message is the whole story for a user."""
    if isinstance(err, OS_ERRORS):
        return True
    errors = sys.modules.get("derain.models.errors")  # imported by whatever raised one
    return errors is not None and isinstance(err, errors.DerainError)


# The library's parameter names, where a message names one, as the flags that set them.
FLAGS = {"allow_lossy": "--allow-lossy", "max_latency": "--max-latency", "reconnect_max": "--reconnect-max",
         "drop_policy": "--drop-policy", "input_options": "--option"}


def as_flags(message: str) -> str:
    return re.sub(r"\b(" + "|".join(FLAGS) + r")\b(?!=)", lambda m: FLAGS[m.group(1)], message)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """A Python warning (the library's `LossyEngineWarning`, a dependency's) as one line on stderr."""
    from derain.cli.console import warn

    warn(f"warning: {as_flags(str(message).splitlines()[0])}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DERAIN_DEBUG") == "1"
    from derain.cli.console import LogHandler, err, error

    logger = logging.getLogger("derain")
    handler = LogHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.func(args))
    except KeyboardInterrupt:
        err.print("derain: interrupted", style="yellow")
        return 130
    except Exception as failure:
        if not is_user_error(failure):
            raise
        if debug:
            err.print(traceback.format_exc().rstrip(), style="dim")
        message = failure.args[0] if isinstance(failure, OSError) and len(failure.args) == 1 else str(failure)
        error(as_flags(message))
        return 2
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
