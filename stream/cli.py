"""The `derain` command line."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.table import Table

from derain.benchmarks.bench import add_bench_parser
from derain.engines import PRECISIONS, export_onnx, select_device, select_precision
from derain.engines.onnx import INPUT_NAME, OPSET, OUTPUT_NAME
from derain.engines.tensorrt import serialize_engine
from derain.models.brn import pretrained_cfgs
from derain.models.data import IMAGE_SUFFIXES, ImageError, find_pairs, read_image
from derain.models.errors import DerainError
from derain.models.evaluate import ImageScore, evaluate
from derain.models.hub import (
    BUILTIN_NAME,
    BUILTIN_PATH,
    cache_dir,
    cached_path,
    fetch,
    is_cached,
    load_model,
)
from derain.models.train import add_train_parser
from derain.stream.demo import add_demo_parser
from derain.stream.images import ImageJob, plan_jobs, run_jobs
from derain.stream.live import add_live_parser
from derain.stream.options import (
    add_engine_options,
    add_weights_option,
    check_json_option,
    console,
    engine_from_args,
    guard_accuracy,
    whole_number,
    write_json,
)
from derain.stream.video import add_video_parser

# Errors whose message is already one line that says what to do.
USER_ERRORS = (
    DerainError, FileNotFoundError, FileExistsError,
    NotADirectoryError, IsADirectoryError, PermissionError,
)


def cmd_image(args: argparse.Namespace) -> int:
    outdir = Path(args.output)
    jobs = plan_jobs(args.inputs, outdir, args.rain, args.overwrite)
    model, engine = engine_from_args(args)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NotADirectoryError(f"-o {outdir}: cannot make the folder ({err.strerror})") from None

    def report(job: ImageJob, error: str | None) -> None:
        if error:
            console.print(f"derain: error: {error}", style="red", soft_wrap=True)
        else:
            console.print(f"{job.source} -> {job.output}")

    if engine.precision != "fp32":
        readable = next((j for j in jobs if j.source.suffix.lower() in IMAGE_SUFFIXES), jobs[0])
        with contextlib.suppress(ImageError):
            guard_accuracy(args, engine, model, torch.from_numpy(read_image(readable.source)).permute(2, 0, 1)[None])
    failed = run_jobs(engine, model if args.rain else None, jobs, report)
    if failed:
        console.print(f"derain: {failed} of {len(jobs)} image(s) failed", style="red")
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    check_json_option(args.json, args.overwrite)
    pairs = find_pairs(args.dataset)
    if args.limit:
        pairs = pairs[: args.limit]
    _, engine = engine_from_args(args)

    def on_image(score: ImageScore) -> None:
        console.print(f"{score.name}: {score.psnr:.2f} dB, SSIM {score.ssim:.4f}", style="dim")

    report = evaluate(engine.run, pairs, str(args.dataset), args.weights or BUILTIN_NAME, on_image)
    table = Table(title=f"{args.dataset}: {report.count} images")
    for column in ("", "PSNR (dB)", "SSIM"):
        table.add_column(column, justify="right")
    table.add_row("rainy input", f"{report.mean('input_psnr'):.2f}", f"{report.mean('input_ssim'):.4f}")
    table.add_row("derained", f"{report.mean('psnr'):.2f}", f"{report.mean('ssim'):.4f}")
    console.print(table)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"-o {output}: no such folder {output.parent}; create it first")
    model = load_model(args.weights)
    if args.format == "onnx":
        export_onnx(model, output, dynamic=args.dynamic, shape=args.shape)
        shape = "N x 3 x H x W (dynamic)" if args.dynamic else " x ".join(map(str, args.shape))
        console.print(f"{output}: ONNX opset {OPSET}, input '{INPUT_NAME}' {shape} float32 in [0, 1], output '{OUTPUT_NAME}'")
    else:
        device = select_device(args.device)
        serialize_engine(model, args.shape, device, select_precision(args.precision, device), output)
        console.print(f"{output}: serialised TensorRT engine for {' x '.join(map(str, args.shape))}")
    return 0


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'1x3x720x1280' or '720x1280' (batch 1) -> (N, 3, H, W)."""
    try:
        numbers = [int(v) for v in text.lower().split("x")]
    except ValueError:
        numbers = []
    if len(numbers) == 2:
        numbers = [1, 3, *numbers]
    if len(numbers) != 4 or numbers[1] != 3 or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NxHxW... as N x 3 x H x W, e.g. 1x3x720x1280 or 720x1280")
    return numbers[0], numbers[1], numbers[2], numbers[3]


def cmd_weights_list(args: argparse.Namespace) -> int:
    table = Table(title=f"weights (cache: {cache_dir()})")
    for column in ("name", "variant", "trained on", "cached"):
        table.add_column(column)
    table.add_row(BUILTIN_NAME, "brn", "synthetic rain (this project)", "built in" if BUILTIN_PATH.is_file() else "missing")
    for cfg in pretrained_cfgs.values():
        table.add_row(cfg.name, cfg.variant, f"{cfg.training_data} (authors)", str(cached_path(cfg)) if is_cached(cfg) else "no")
    console.print(table)
    console.print("The authors' checkpoints carry no licence: fetched only on request, never shipped.", style="dim")
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    for name in args.names:
        path = fetch(name, mirror=args.mirror, timeout=args.timeout)
        console.print(f"{name}: {path} (SHA-256 checked)")
    return 0


def add_image_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("image", help="derain image files or folders into PNGs")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the derained PNGs")
    p.add_argument("--rain", action="store_true", help="also write the rain layer as NAME_rain.png")
    p.add_argument("--overwrite", action="store_true", help="replace PNGs already in OUTDIR")
    add_engine_options(p)
    p.set_defaults(func=cmd_image)


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM on a paired test set, with the paper's protocol")
    p.add_argument("dataset", type=Path, metavar="DATASET", help="input/+target/, rain/+norain/ or the authors' rainy/ layout")
    p.add_argument("--json", metavar="FILE", help="write the means and per-image figures as JSON")
    p.add_argument("--limit", type=whole_number(0), default=0, metavar="N", help="only the first N pairs (default 0: all)")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_engine_options(p)
    p.set_defaults(func=cmd_eval, precision="fp32")


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the model as ONNX or as a serialised TensorRT engine")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--dynamic", action="store_true", help="ONNX: free batch, height and width")
    p.add_argument("--shape", type=parse_shape, default=(1, 3, 720, 1280), metavar="Nx3xHxW",
                   help="the static input shape (default 1x3x720x1280)")
    p.add_argument("--device", default="auto", help="TensorRT: the GPU to build for")
    p.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto", help="TensorRT: default fp16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_weights_option(p)
    p.set_defaults(func=cmd_export)


def add_weights_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list or fetch named weights")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="the named weights and what is cached").set_defaults(func=cmd_weights_list)
    f = wsub.add_parser("fetch", help="download named weights into the cache, checking their SHA-256")
    f.add_argument("names", nargs="+", metavar="NAME")
    f.add_argument("--mirror", metavar="URL", help="base URL of a flat folder of the released files (or $DERAIN_WEIGHTS_MIRROR)")
    f.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds")
    f.set_defaults(func=cmd_weights_fetch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Remove rain from images and video with BRN.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_image_parser(sub)
    add_eval_parser(sub)
    add_weights_parser(sub)
    add_export_parser(sub)
    add_train_parser(sub)
    add_video_parser(sub)
    add_live_parser(sub)
    add_demo_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, OSError) and len(err.args) == 1 else str(err)
        console.print(f"derain: error: {message}", style="red", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("derain: interrupted", style="yellow")
        return 130


if __name__ == "__main__":
    sys.exit(main())
