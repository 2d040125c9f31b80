"""`derain video IN -o OUT`: derain a video file, keeping its timing, tags, audio and subtitles.

Exit status: 0 done; 1 stopped by an error mid-file (the frames written so far are kept as a
playable file unless --no-partial); 2 bad input or options (nothing written); 130 Ctrl-C
(SIGINT) and 143 SIGTERM, with the output finalised as for an error.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from derain.cli.eval_video import add_temporal_options
from derain.cli.options import EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM, add_encode_options, add_engine_options

if TYPE_CHECKING:
    from derain.api import VideoReport
    from derain.stream.decode import Source
    from derain.stream.encode import Sink


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("video", help="derain a video file (audio and subtitles are copied untouched)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, metavar="INPUT", help="video file")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT", help="output video file; its name picks the container")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="frames per engine call (default 1; 4-8 helps on a GPU)")
    p.add_argument("--compare", action="store_true", help="write input and derained side by side (twice the width)")
    p.add_argument("--display", action="store_true", help="show the output live in a window, where a display exists")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start at S seconds (output timestamps then start at 0)")
    p.add_argument("--duration", type=float, metavar="S", help="derain only S seconds")
    add_temporal_options(p)
    add_encode_options(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the summary (frames, seconds, fps, per-stage time) as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and the --json file) if it exists")
    p.add_argument("--no-partial", action="store_true", help="if the job stops early, delete the output instead of keeping the frames done")
    add_engine_options(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread, so it finalises the output like Ctrl-C."""
    from derain.stream.pipeline import Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(summary: VideoReport, debug: bool = False) -> int:
    """Print the outcome and the stage table; the exit status for it."""
    from derain.cli.console import err, out, traceback_of, warn

    err.print(summary.table())
    if summary.corrupt_packets:
        warn(f"{summary.input}: {summary.corrupt_packets} corrupt video packet(s) could not be decoded "
             "and were skipped, as ffmpeg skips them")
    where = summary.output if summary.output_kept else "nothing (output removed)"
    if summary.complete:
        out.print(f"{summary.input} -> {summary.output}: {summary.frames} frames, {summary.fps:.2f} fps")
        return 0
    if debug and summary.exception is not None:
        traceback_of(summary.exception)
    why = f"interrupted ({summary.interrupted})" if summary.interrupted else f"stopped by an error: {summary.error}"
    kept = f"{summary.frames} frames written to {where}" if summary.output_kept else f"{summary.frames} frames were done; {where}"
    warn(f"{why}; {kept}")
    if summary.interrupted == "SIGTERM":
        return EXIT_SIGTERM
    return EXIT_SIGINT if summary.interrupted else EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    import derain
    from derain.cli.console import err
    from derain.cli.options import check_json_option, engine_options, open_preview, write_json
    from derain.cli.progress import VideoBar

    check_json_option(args.json, args.overwrite)
    preview = open_preview(args, f"derain: {args.input.name}")
    bar = VideoBar(args.input.name)

    @contextlib.contextmanager
    def on_start(source: Source, sink: Sink) -> Iterator[None]:
        err.print(
            f"{source.path}: {source.width}x{source.height} {source.layout.format}, "
            f"{float(source.rate or 0):.3g} fps, {len(source.passthrough)} stream(s) copied -> "
            f"{sink.path}: {sink.codec_name} {sink.layout.format}",
            style="dim",
        )
        with bar.shown(source.expected_frames):
            yield

    try:
        with sigterm_as_exception():
            summary = derain.video(
                args.input, args.output, batch=args.batch, temporal=args.temporal, fusion=args.fusion, compare=args.compare, start=args.start, duration=args.duration,
                codec=args.codec, crf=args.crf, bitrate=args.bitrate, preset=args.preset, overwrite=args.overwrite,
                keep_partial=not args.no_partial, on_start=on_start, on_progress=bar.update, preview=preview,
                **engine_options(args),
            )
    finally:
        if preview is not None:
            preview.close()
    if args.json:
        write_json(args.json, summary.to_dict())
    return report(summary, args.show_traceback)
