"""`derain eval`: PSNR and SSIM on a paired test set, with the paper's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.options import add_engine_options, whole_number


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM on a paired test set, with the paper's protocol", description=__doc__)
    p.add_argument("dataset", type=Path, metavar="DATASET", help="input/+target/, rain/+norain/ or the authors' rainy/ layout")
    p.add_argument("--json", metavar="FILE", help="write the means and per-image figures as JSON")
    p.add_argument("--limit", type=whole_number(0), default=0, metavar="N", help="only the first N pairs (default 0: all)")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_engine_options(p)
    p.set_defaults(func=run, precision="fp32")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from derain.cli.console import err, out
    from derain.cli.options import check_json_option, engine_from_args, write_json
    from derain.models.data import find_pairs
    from derain.models.evaluate import ImageScore, evaluate
    from derain.models.hub import BUILTIN_NAME

    check_json_option(args.json, args.overwrite)
    pairs = find_pairs(args.dataset)
    if args.limit:
        pairs = pairs[: args.limit]
    engine = engine_from_args(args)

    def on_image(score: ImageScore) -> None:
        err.print(f"{score.name}: {score.psnr:.2f} dB, SSIM {score.ssim:.4f}", style="dim")

    report = evaluate(engine.run, pairs, str(args.dataset), args.weights or BUILTIN_NAME, on_image)
    table = Table(title=f"{args.dataset}: {report.count} images")
    for column in ("", "PSNR (dB)", "SSIM"):
        table.add_column(column, justify="right")
    table.add_row("rainy input", f"{report.mean('input_psnr'):.2f}", f"{report.mean('input_ssim'):.4f}")
    table.add_row("derained", f"{report.mean('psnr'):.2f}", f"{report.mean('ssim'):.4f}")
    out.print(table)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0
