"""The `derain` command line: the library's only edge.

Each command is a module here with `add_parser` and `run`. Only this package knows about
flags, argparse, exit codes and the console; the work is `import derain`'s. The parsers import
nothing heavy, so `derain --help` and `derain COMMAND --help` never load torch, and the
library is imported when a command runs.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import platform
import sys
import warnings
from collections.abc import Sequence

COMMANDS = ("video", "live", "image", "batch", "eval", "eval-video", "bench", "demo", "weights", "export", "train")
# Errors whose message is already one line that says what to do (beside derain.DerainError).
OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Remove rain from images and video with BRN.")
    parser.add_argument("--debug", action="store_true", help="show the traceback behind an error (or set DERAIN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"derain.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def is_user_error(err: BaseException) -> bool:
    """An error whose one-line message is the whole story for a user."""
    if isinstance(err, OS_ERRORS):
        return True
    errors = sys.modules.get("derain.models.errors")  # imported by whatever raised one
    return errors is not None and isinstance(err, errors.DerainError)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """A Python warning (the library's `LossyEngineWarning`, a dependency's) as one line on stderr."""
    from derain.cli.console import warn

    warn(f"warning: {str(message).splitlines()[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DERAIN_DEBUG") == "1"
    args.show_traceback = debug
    from derain.cli.console import LogHandler, err, error, traceback_of

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
            traceback_of(failure)
        message = failure.args[0] if isinstance(failure, OSError) and len(failure.args) == 1 else str(failure)
        error(message)
        return 2
    finally:
        logger.removeHandler(handler)


# glibc's mallopt parameters (malloc.h) and the environment variables that set them too.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
# Above a 4K frame's 32-channel FP32 feature map (32 x 3840 x 2160 x 4 bytes: 1.06 GB, under
# 1 GiB's 1.07 GB): only larger blocks are still mapped on their own.
MMAP_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep and reuse the memory of freed feature maps rather than return it.

    A 640x480 frame's 32-channel FP32 feature map is 39 MB, past the largest threshold (32 MiB)
    under which glibc serves an allocation from its heap: every one is mapped, page-faulted in
    and unmapped again, and the kernel's time (9.9 s of 10.5 s for one image) outweighs the
    convolutions'. Raising the mmap threshold to 1 GiB, and the trim threshold with it (as glibc
    pairs them itself), lets those blocks be reused, at the cost of a peak-sized heap kept until
    the process ends. Process-wide, so only the console script calls it, never the library or
    `main` (which tests and other programs run in their own processes); a user's own MALLOC_*
    or GLIBC_TUNABLES settings win.

    Returns:
        Whether the allocator was tuned (glibc, and none of MALLOC_ENV set).
    """
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in MALLOC_ENV):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD - 1))


def entry() -> None:
    """The `derain` console script and `python -m derain`: `main` in a process of its own."""
    keep_freed_memory()
    sys.exit(main())


if __name__ == "__main__":
    entry()
