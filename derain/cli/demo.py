"""`derain demo`: a rainy clip made here, derained, compared, with the PSNR gain it brought.

The clean scenes are scikit-image's bundled sample photographs (no download), panned slowly;
the rain is a streak field that falls consistently from frame to frame. Because the clean
frames are known, the demo says how many dB the derained video gained over the rainy one,
measured on the decoded files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from derain.cli.options import add_engine_options

if TYPE_CHECKING:
    from derain.stream.decode import Source
    from derain.stream.encode import Sink

NAMES = ("rainy", "derained", "compare")  # the three clips a run leaves in its folder


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="make a short rainy clip, derain it, and show the PSNR gain (no download)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, default=Path("derain-demo"), metavar="DIR",
                   help="folder for rainy.mp4, derained.mp4, compare.mp4 (default: derain-demo)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="frames per engine call")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.text import Text

    import derain
    from derain.cli.console import err, out, warn
    from derain.cli.options import engine_from_args
    from derain.cli.progress import VideoBar
    from derain.cli.video import report
    from derain.models.errors import InputError
    from derain.models.metrics import psnr
    from derain.stream import demo
    from derain.stream.pipeline import signals_deferred

    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be at least 1")
    engine = engine_from_args(args)  # first: missing weights should stop the demo before any work
    outdir = args.output
    outdir.mkdir(parents=True, exist_ok=True)
    # Made in a scratch folder and moved in at the end: a rerun that fails or is stopped leaves
    # the last run's clips as they were.
    with tempfile.TemporaryDirectory(prefix=".derain-demo-", dir=outdir) as scratch:
        rainy_path, derained_path, compare_path = (Path(scratch) / f"{n}.mp4" for n in NAMES)
        clean = demo.clean_frames()
        demo.write_clip(rainy_path, demo.rainy_frames(clean))
        err.print(f"{len(clean)} frames of {demo.WIDTH}x{demo.HEIGHT} rain over {', '.join(demo.SCENES)} (scikit-image samples)")
        bar = VideoBar("derain")

        @contextlib.contextmanager
        def on_start(source: Source, sink: Sink) -> Iterator[None]:
            with bar.shown(source.expected_frames):
                yield

        summary = derain.video(rainy_path, derained_path, engine=engine, batch=args.batch, crf=demo.CRF,
                               codec="libx264", keep_partial=False, on_start=on_start, on_progress=bar.update)
        summary.input, summary.output = str(outdir / rainy_path.name), str(outdir / derained_path.name)  # where they land
        status = report(summary, args.show_traceback)
        if status:
            warn(f"{outdir}: the demo's files from before are unchanged")
            return status
        rainy_read, derained_read = demo.read_clip(rainy_path), demo.read_clip(derained_path)
        demo.side_by_side(compare_path, [p for p, _ in rainy_read], [p for p, _ in derained_read])
        before = np.mean([psnr(rgb, ref) for (_, rgb), ref in zip(rainy_read, clean)])
        after = np.mean([psnr(rgb, ref) for (_, rgb), ref in zip(derained_read, clean)])
        with signals_deferred():
            for path in (rainy_path, derained_path, compare_path):
                os.replace(path, outdir / path.name)
    out.print(f"{outdir}: {', '.join(f'{n}.mp4' for n in NAMES)} (compare: rainy | derained, side by side)")
    out.print(Text.assemble(
        f"PSNR against the clean frames (RGB, decoded files): rainy {before:.2f} dB, derained {after:.2f} dB, gain ",
        (f"{after - before:+.2f} dB", "bold"),
    ))
    return 0
