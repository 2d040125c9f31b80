"""`derain image`: derain image files and folders into PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.options import add_engine_options


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("image", help="derain image files or folders into PNGs", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="folder for the derained PNGs")
    p.add_argument("--rain", action="store_true", help="also write the rain layer as NAME_rain.png")
    p.add_argument("--overwrite", action="store_true", help="replace PNGs already in OUTDIR")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import derain
    from derain.cli.console import err, error, out
    from derain.cli.options import engine_options

    def on_image(source: Path, output: Path | None, failure: str | None) -> None:
        if failure:
            error(failure)
        else:
            out.print(f"{source} -> {output}")

    report = derain.image(args.inputs, args.output, rain=args.rain, overwrite=args.overwrite, on_image=on_image, **engine_options(args))
    if report.failed:
        err.print(f"derain: {len(report.failed)} of {len(report.failed) + len(report.written)} image(s) failed", style="red")
        return 1
    return 0
