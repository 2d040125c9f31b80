"""`derain bench`: how fast BRN runs here, against the authors' baseline and the roofline.

Results (the tables and the legend) go to stdout; progress, notes and skipped rows to stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from derain.cli.options import ENGINES, PRECISIONS, whole_number

if TYPE_CHECKING:
    import torch
    from rich.table import Table

    from derain.benchmarks.runner import Plan
    from derain.models.brn import BRN

VARIANTS = ("brn", "brn-xr", "brn-rx", "crn")  # derain.models.brn.VARIANTS
GPU_RESOLUTIONS = [(640, 360), (1280, 720), (1920, 1080), (3840, 2160)]
# A 160x120 frame takes about half a second on a 2-core CPU: enough to see the shape of things.
CPU_RESOLUTIONS = [(160, 120)]
DEFAULTS: dict[str, tuple[Any, Any]] = {  # (GPU, CPU)
    "resolution": (GPU_RESOLUTIONS, CPU_RESOLUTIONS),
    "batch": ([1, 2, 4, 8], [1]),
    "precision": (["fp16"], ["fp32"]),
    "iterations": (50, 5),
    "warmup": (10, 1),
}


def comma_list(parse: Callable[[str], object], what: str) -> Callable[[str], list[Any]]:
    def parse_list(text: str) -> list[Any]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r}: give one or more {what}, separated by commas")
        return [parse(item) for item in items]

    return parse_list


def resolution(text: str) -> tuple[int, int]:
    """'1280x720' -> (width 1280, height 720)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive")
    return width, height


positive = whole_number(1)


def choice(options: tuple[str, ...] | dict[str, object]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(options)}")
        return text

    return parse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="frames per second here, against the authors' baseline and the roofline", description=__doc__)
    p.add_argument("--resolution", type=comma_list(resolution, "WIDTHxHEIGHT sizes"), metavar="WxH[,WxH...]",
                   help="default: 640x360,1280x720,1920x1080,3840x2160 on a GPU, 160x120 on the CPU")
    p.add_argument("--batch", type=comma_list(positive, "batch sizes"), metavar="N[,N...]",
                   help="frames per engine call; default: 1,2,4,8 on a GPU, 1 on the CPU")
    p.add_argument("--engine", type=comma_list(choice(ENGINES), "engines"), default=["auto"], metavar="NAME[,NAME...]",
                   help=f"any of {', '.join(ENGINES)} (default: auto; on the CPU its row names the backend it measured fastest)")
    p.add_argument("--precision", type=comma_list(choice(("auto", *PRECISIONS)), "precisions"), metavar="P[,P...]",
                   help=f"any of auto, {', '.join(PRECISIONS)} (auto: each engine's own); default: fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--variant", choices=VARIANTS, help="model variant (default: brn, or the one in --weights)")
    p.add_argument("--stages", type=positive, metavar="T",
                   help="recurrent stages: the first T of --weights' (default: all of them), or of a random model (default: 4)")
    p.add_argument("--weights", metavar="NAME|PATH",
                   help="registry name or checkpoint file; default: random weights (speed does not depend on their values)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--iterations", type=positive, metavar="N", help="timed calls per row; default: 50 on a GPU, 5 on the CPU")
    p.add_argument("--warmup", type=positive, metavar="N",
                   help="untimed calls first (the first one builds compile and tensorrt engines); default: 10 on a GPU, 1 on the CPU")
    p.add_argument("--input", type=Path, metavar="VIDEO",
                   help="end-to-end mode: also run the whole pipeline on this file, and a plain PyAV transcode of it")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON, rewritten as each row finishes (replaced if it exists)")
    p.set_defaults(func=run)


def bench_model(args: argparse.Namespace) -> tuple[BRN, str]:
    """The model to time and how to describe its weights."""
    import torch

    from derain.models.brn import BRN
    from derain.models.errors import InputError
    from derain.models.hub import load_model

    if args.weights is None:
        torch.manual_seed(0)
        return BRN(args.variant or "brn", args.stages or 4).eval(), "random (speed does not depend on weight values)"
    model = load_model(args.weights)
    if args.variant and args.variant != model.variant:
        raise InputError(f"--variant {args.variant}: {args.weights} holds a {model.variant} model; drop --variant or pick other --weights")
    if args.stages is not None:
        # The rule of every other command (derain.load_model): the first T of the checkpoint's stages.
        if args.stages > model.stages:
            raise InputError(f"--stages {args.stages}: {args.weights} has {model.stages} recurrent stages; give 1 to {model.stages}")
        model = load_model(args.weights, stages=args.stages)
    return model, args.weights


def plan_from_args(args: argparse.Namespace, device: torch.device) -> Plan:
    from derain.benchmarks.end_to_end import video_size
    from derain.benchmarks.runner import Plan
    from derain.cli.options import check_json_option
    from derain.models.errors import InputError

    gpu = 0 if device.type == "cuda" else 1
    pick = {name: getattr(args, name) or defaults[gpu] for name, defaults in DEFAULTS.items()}
    check_json_option(args.json, overwrite=True)
    if args.input is not None:
        if args.resolution:
            raise InputError(f"--resolution: with --input the size is the video's ({args.input}); drop --resolution")
        pick["resolution"] = [video_size(args.input)]
    return Plan(pick["resolution"], pick["batch"], args.engine, pick["precision"], pick["iterations"], pick["warmup"], args.input)


def _pct(share: float) -> str:
    return f"{100 * share:.3g}%"


def _engine_cell(row: dict[str, Any]) -> str:
    """The backend that ran, and what was asked for where that differs ("eager (auto)")."""
    requested = row.get("requested", row["engine"])
    return row["engine"] if requested == row["engine"] else f"{row['engine']} ({requested})"


def results_tables(report: dict[str, Any]) -> list[Table]:
    """One table per resolution: the baseline first, then every engine row."""
    from rich import box
    from rich.table import Table

    tables = []
    e2e = report["transcode"] is not None
    for base in report["baseline"]:
        size = (base["width"], base["height"])
        table = Table(title=f"{size[0]}x{size[1]}, {base['flops_per_frame'] / 1e9:.3g} GFLOP a frame", box=box.SIMPLE_HEAD)
        columns = ["engine", "prec", "batch", "fps", "p50 ms", "p99 ms", "x base", "dB vs fp32", "compute", "memory", "peak MB", "build s"]
        columns += ["e2e fps", "bottleneck"] if e2e else []
        for column in columns:
            table.add_column(column, justify="left" if column in ("engine", "prec", "bottleneck") else "right")
        for row in [base] + [r for r in report["rows"] if (r["width"], r["height"]) == size]:
            if "error" in row:
                table.add_row(_engine_cell(row), row["precision"], str(row["batch"]), "failed", *["-"] * (len(columns) - 4), style="red")
                continue
            db = row.get("psnr_vs_fp32")
            cells = [
                _engine_cell(row), row["precision"], str(row["batch"]), f"{row['fps']:.3g}",
                f"{row['latency_ms_p50']:.4g}", f"{row['latency_ms_p99']:.4g}", f"{row['speedup_vs_baseline']:.2f}",
                "-" if row["engine"] == "baseline" else "same" if db is None else f"{db:.1f}",
                _pct(row["compute_floor_share"]), _pct(row["memory_floor_share"]),
                "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}", f"{row['build_seconds']:.2f}",
            ]
            if e2e:
                run = row.get("end_to_end")
                cells += [f"{run['fps']:.3g}", run["bottleneck"]] if run else ["-", "-"]
            table.add_row(*cells, style="dim" if row["engine"] == "baseline" else None)
        tables.append(table)
    return tables


def legend(report: dict[str, Any]) -> list[str]:
    model, peaks, device = report["model"], report["peaks"], report["device"]
    lines = [
        f"{model['variant'].upper()} T={model['stages']} on {device['gpu'] or device['cpu']}; torch {device['torch']}",
        (f"peaks measured here: {peaks['compute_flops_per_s'] / 1e12:.3g} TFLOP/s ({peaks['compute_dtype']} matmul), "
         f"{peaks['bandwidth_bytes_per_s'] / 1e9:.3g} GB/s (copy)"),
        "baseline: the authors' module (separate gate convs), eager fp32, one frame at a time, numpy in and out",
        "x base: fps over the baseline's; dB vs fp32: PSNR against eager fp32 on the same frames (same: identical)",
        "compute / memory: share of the compute and memory floors reached",
    ]
    if report["transcode"] is not None:
        t = report["transcode"]
        lines.append(f"plain PyAV transcode of the input ({t['codec']} crf {t['crf']}): {t['fps']:.3g} fps; "
                     "e2e fps: the whole pipeline (decode, convert, engine, encode)")
    return lines


def run(args: argparse.Namespace) -> int:
    from derain.benchmarks.runner import run_bench
    from derain.cli.console import err, out
    from derain.cli.options import write_json
    from derain.engines import select_device

    device = select_device(args.device)
    model, weights = bench_model(args)
    plan = plan_from_args(args, device)
    err.print(f"{model.variant.upper()} T={model.stages}, weights: {weights}; {device}; "
              f"{plan.iterations} timed calls per row after {plan.warmup} warm-up", style="dim")

    def progress(row: dict[str, Any], report: dict[str, Any]) -> None:
        where = f"  {row['width']}x{row['height']} {_engine_cell(row)} {row['precision']} batch {row['batch']}"
        if "error" in row:
            err.print(f"{where}: failed: {row['error']}", style="red")
        else:
            err.print(f"{where}: {row['fps']:.3g} fps", style="dim")
        if args.json:
            write_json(args.json, report)  # atomic: a crash or Ctrl-C later leaves every row so far

    report: dict[str, Any] = run_bench(model, device, plan, weights, progress)
    for table in results_tables(report):
        out.print(table)
    for line in legend(report):
        out.print(line, style="dim")
    for note in report["notes"]:
        err.print(f"note: {note}", style="dim")
    for item in report["skipped"]:
        where = f" at batch {item['batch']} {item['width']}x{item['height']}" if "batch" in item else ""
        err.print(f"skipped {item['engine']} {item['precision']}{where}: {item['reason']}", style="yellow")
    if args.json:
        write_json(args.json, report)
        err.print(f"report written to {args.json}", style="dim")
    return 1 if any("error" in row for row in report["rows"]) else 0
