"""`derain eval-video`: how good and how steady a derained video is, frame by frame and in time.

PSNR and SSIM follow the paper's protocol (with CLEAN); the warping error (Lai et al. 2018) and
a flicker figure measure what changes from frame to frame that should not. Each is given for
the rainy input and the derained output. RAINY and CLEAN are each a video file or a folder of
image frames in name order, of the same length and size; the clips are held in memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.options import add_engine_options, whole_number

FUSION_RULES = ("rain", "mean", "median")  # derain.models.temporal.FUSION_RULES


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval-video", help="PSNR/SSIM, warping error and flicker of a derained video", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rainy", type=Path, metavar="RAINY", help="rainy video file or folder of frames")
    p.add_argument("clean", type=Path, nargs="?", metavar="CLEAN", help="ground truth video or folder of frames (optional)")
    add_temporal_options(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the means and per-frame figures as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_engine_options(p)
    p.set_defaults(func=run, precision="fp32")


def add_temporal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temporal", type=whole_number(1), default=1, metavar="K",
                   help="fuse each frame with its K-1 neighbours aligned by optical flow (odd; default 1: off)")
    p.add_argument("--fusion", choices=FUSION_RULES, default="rain",
                   help="how --temporal combines the aligned frames (default: rain, where the model removed rain or a frame "
                        "alone is brighter, from the neighbours clean there; mean: confidence-weighted; median)")


def fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from derain.cli.console import err, out
    from derain.cli.options import check_json_option, engine_from_args, write_json
    from derain.models.temporal import check_temporal
    from derain.models.temporal_metrics import FrameScore, evaluate_video
    from derain.stream.sequences import check_pair, read_sequence

    check_json_option(args.json, args.overwrite)
    check_temporal(args.temporal, args.fusion)
    rainy = read_sequence(args.rainy)
    clean = read_sequence(args.clean) if args.clean is not None else None
    if clean is not None:
        check_pair(rainy, clean, args.rainy, args.clean)
    engine = engine_from_args(args)

    def on_frame(score: FrameScore) -> None:
        err.print(f"frame {score.index}: {fmt(score.output_psnr, 2)} dB, SSIM {fmt(score.output_ssim, 4)}, "
                  f"warp error {fmt(score.output_warp_error, 3, 1e3)}e-3, flicker {fmt(score.output_flicker, 2)}", style="dim")

    report = evaluate_video(engine.run, rainy, clean, args.temporal, args.fusion, engine.device, engine.dtype, on_frame)
    fused = f", --temporal {args.temporal} {args.fusion}" if args.temporal > 1 else ""
    table = Table(title=f"{args.rainy}: {len(report.frames)} frames{fused}, flow from the {report.flow_from}")
    for column in ("", "PSNR (dB)", "SSIM", "warp error (1e-3)", "flicker (luma codes)"):
        table.add_column(column, justify="right")
    for side, label in (("input", "rainy input"), ("output", "derained")):
        table.add_row(label, fmt(report.mean(side, "psnr"), 2), fmt(report.mean(side, "ssim"), 4),
                      fmt(report.mean(side, "warp_error"), 3, 1e3), fmt(report.mean(side, "flicker"), 2))
    out.print(table)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0
