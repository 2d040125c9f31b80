"""Options that several commands share: which weights, which engine, which device."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor

from derain.engines import BACKENDS, PRECISIONS, Engine, build_engine, check_accuracy
from derain.models.brn import BRN
from derain.models.files import atomic_path
from derain.models.hub import load_model
from derain.stream.color import to_rgb
from derain.stream.decode import Source
from derain.stream.display import Preview, display_available

console = Console(stderr=True, highlight=False, markup=False)  # paths and messages may hold [brackets]


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
    parser.add_argument(
        "--weights",
        metavar="NAME|PATH",
        default=None,
        help="registry name (see `derain weights list`) or checkpoint file; default: the built-in weights",
    )


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


def write_json(path: str | Path, record: dict) -> None:
    """The report, written whole or not at all."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    add_weights_option(parser)
    parser.add_argument("--engine", choices=BACKENDS, default="auto", help="inference backend (default: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="default: fp16 on a GPU, fp32 on the CPU",
    )
    parser.add_argument("--tile", type=int, metavar="PX", help="run frames larger than PX in overlapping PX-sized tiles")
    parser.add_argument(
        "--allow-lossy",
        action="store_true",
        help="go on when a reduced-precision engine differs from fp32 by more than the 45 dB guard",
    )


def engine_from_args(args: argparse.Namespace) -> tuple[BRN, Engine]:
    model = load_model(args.weights)
    notes: list[str] = []
    engine = build_engine(model, args.engine, args.device, args.precision, tile=args.tile, notes=notes)
    picked = "picked by auto" if args.engine == "auto" else "as asked"
    console.print(
        f"{model.variant.upper()} (T={model.stages}) from {args.weights or 'built-in weights'}: "
        f"{engine.backend} engine ({picked}), {engine.precision}, {engine.device}",
        style="dim",
    )
    for note in notes:
        console.print(f"  passed over {note}", style="dim")
    return model, engine


def guard_accuracy(args: argparse.Namespace, engine: Engine, model: BRN, frame: Tensor, batch: int = 1) -> None:
    """Refuse (or, with --allow-lossy, warn about) a reduced-precision engine that drifts from fp32."""
    warn = lambda m: console.print(m, style="yellow")
    psnr = check_accuracy(engine, model, frame, args.allow_lossy, warn=warn, batch=batch)
    if psnr is not None:
        console.print(f"{engine.precision} vs fp32 on the first frame: {psnr:.1f} dB PSNR", style="dim")


def open_preview(args: argparse.Namespace, title: str) -> Preview | None:
    """The --display window, or None (with a warning where no display can be opened)."""
    if not args.display:
        return None
    why_not = display_available()
    if why_not:
        console.print(f"--display: {why_not}; going on without a window", style="yellow")
        return None
    return Preview(title)


def guard_first_frame(args: argparse.Namespace, engine: Engine, model: BRN, source: Source, batch: int = 1) -> None:
    """Build the engine for the job's batch shape and run `guard_accuracy`, on the source's first
    decoded frame converted as the pipeline converts it.

    Engines built per shape (compile, tensorrt: minutes the first time for TensorRT) build here,
    under a spinner that Ctrl-C stops, rather than silently under the progress bar.
    """
    rgb = to_rgb([torch.from_numpy(p.copy())[None] for p in source.first_planes()], source.color)
    rgb = rgb.clamp(0, 1).to(engine.device, engine.dtype)
    builds = engine.backend in ("compile", "tensorrt")
    if engine.precision == "fp32" and not builds:
        return
    shape = f"{batch}x3x{source.height}x{source.width}"
    with console.status(f"preparing the {engine.backend} engine for {shape} {engine.precision} (built once per shape)"):
        before = engine.build_seconds
        if engine.precision == "fp32":
            engine.run(rgb.expand(batch, -1, -1, -1).contiguous())
        else:
            guard_accuracy(args, engine, model, rgb, batch)
    if engine.build_seconds - before >= 1:
        console.print(f"{engine.backend} engine for {shape} ready in {engine.build_seconds - before:.1f} s", style="dim")
