"""Flags that several commands share, and the checks and reports they have in common.

Light on purpose: `derain --help` builds every parser from here without importing torch, so
the choices below are written out, and tests/test_cli.py checks them against the library's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from derain.engines import Engine
    from derain.stream.display import Preview

ENGINES = ("auto", "tensorrt", "compile", "eager", "onnx", "openvino")  # derain.engines.BACKENDS
PRECISIONS = ("fp32", "fp16", "bf16")  # derain.engines.PRECISIONS
EXIT_USAGE, EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 2, 1, 130, 143


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {minimum}")
        return value

    return parse


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="NAME|PATH", default=None,
                        help="registry name (see `derain weights list`) or checkpoint file; default: the built-in weights")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    add_weights_option(parser)
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="inference backend (default: auto: on a GPU the best installed; on the CPU the fastest FP32 one, measured once per frame size)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto", help="default: fp16 on a GPU, fp32 on the CPU")
    parser.add_argument("--stages", type=whole_number(1), metavar="T",
                        help="run only the first T recurrent stages (faster, less rain removed; default: all of the weights')")
    parser.add_argument("--tile", type=int, metavar="PX", help="run frames larger than PX in overlapping PX-sized tiles")
    parser.add_argument("--allow-lossy", action="store_true",
                        help="go on when a reduced-precision engine differs from fp32 by more than the 45 dB guard")


def add_encode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", metavar="NAME", help="video encoder (default by output name: H.264 for .mp4/.mkv/.mov, VP9 for .webm, MJPEG for .avi)")
    parser.add_argument("--crf", type=float, metavar="Q", help="constant quality for x264/x265/VP9/AV1 (0 is lossless in x264; default 18 for x264)")
    parser.add_argument("--bitrate", metavar="RATE", help="target bit rate, e.g. 4M or 800k")
    parser.add_argument("--preset", metavar="NAME", help="encoder speed preset (x264/x265/SVT-AV1), e.g. veryfast, medium, slow")


class EngineOptions(TypedDict):
    """The engine flags as the keyword arguments of `derain.video`, `derain.image` and the rest."""

    weights: str | None
    engine: str
    device: str
    precision: str
    stages: int | None
    tile: int | None
    allow_lossy: bool


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(weights=args.weights, engine=args.engine, device=args.device, precision=args.precision,
                         stages=args.stages, tile=args.tile, allow_lossy=args.allow_lossy)


def engine_from_args(args: argparse.Namespace) -> Engine:
    """The engine the engine options ask for; the library logs what it picked and why."""
    from derain.api import engine_for

    return engine_for(**engine_options(args))


def check_json_option(path: str | Path | None, overwrite: bool = False) -> None:
    """Refuse a --json FILE that could not be written, before any work: a finished job must not fail at the end."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--json {path}: is a folder; name a file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--json {path}: no such folder {path.parent}; create it or name another file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"--json {path}: already exists; pass --overwrite to replace it")


def write_json(path: str | Path, record: dict[str, object]) -> None:
    """The report, written whole or not at all."""
    from derain.models.files import atomic_path

    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def open_preview(args: argparse.Namespace, title: str) -> Preview | None:
    """The --display window, or None (with a warning where no display can be opened)."""
    from derain.cli.console import warn
    from derain.stream.display import Preview, display_available

    if not args.display:
        return None
    why_not = display_available()
    if why_not:
        warn(f"--display: {why_not}; going on without a window")
        return None
    return Preview(title)
