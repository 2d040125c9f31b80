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

from derain.models.errors import InputError
from derain.stream.decode import Source
from derain.stream.encode import EncodeOptions, Sink
from derain.stream.options import (
    add_engine_options,
    check_json_option,
    console,
    engine_from_args,
    guard_first_frame,
    open_preview,
    write_json,
)
from derain.stream.pipeline import Terminated, VideoJob, check_paths, run_video
from derain.stream.stats import Stats, Summary, progress_bar

EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 1, 130, 143


def add_encode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", metavar="NAME", help="video encoder (default by output name: H.264 for .mp4/.mkv/.mov, VP9 for .webm, MJPEG for .avi)")
    parser.add_argument("--crf", type=float, metavar="Q", help="constant quality for x264/x265/VP9/AV1 (0 is lossless in x264; default 18 for x264)")
    parser.add_argument("--bitrate", metavar="RATE", help="target bit rate, e.g. 4M or 800k")
    parser.add_argument("--preset", metavar="NAME", help="encoder speed preset (x264/x265/SVT-AV1), e.g. veryfast, medium, slow")


def add_video_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video",
        help="derain a video file (audio and subtitles are copied untouched)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="video file")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT", help="output video file; its name picks the container")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="frames per engine call (default 1; 4-8 helps on a GPU)")
    p.add_argument("--compare", action="store_true", help="write input and derained side by side (twice the width)")
    p.add_argument("--display", action="store_true", help="show the output live in a window, where a display exists")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start at S seconds (output timestamps then start at 0)")
    p.add_argument("--duration", type=float, metavar="S", help="derain only S seconds")
    add_encode_options(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the summary (frames, seconds, fps, per-stage time) as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and the --json file) if it exists")
    p.add_argument("--no-partial", action="store_true", help="if the job stops early, delete the output instead of keeping the frames done")
    add_engine_options(p)
    p.set_defaults(func=cmd_video)


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread, so it finalises the output like Ctrl-C."""
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


def report(summary: Summary) -> int:
    """Print the outcome and the stage table; the exit status for it."""
    console.print(summary.table())
    if summary.corrupt_packets:
        console.print(
            f"derain: {summary.input}: {summary.corrupt_packets} corrupt video packet(s) could not be decoded "
            "and were skipped, as ffmpeg skips them", style="yellow", soft_wrap=True,
        )
    where = summary.output if summary.output_kept else "nothing (output removed)"
    if summary.complete:
        console.print(f"{summary.input} -> {summary.output}: {summary.frames} frames, {summary.fps:.2f} fps")
        return 0
    why = f"interrupted ({summary.interrupted})" if summary.interrupted else f"stopped by an error: {summary.error}"
    kept = f"{summary.frames} frames written to {where}" if summary.output_kept else f"{summary.frames} frames were done; {where}"
    console.print(f"derain: {why}; {kept}", style="yellow", soft_wrap=True)
    if summary.interrupted == "SIGTERM":
        return EXIT_SIGTERM
    return EXIT_SIGINT if summary.interrupted else EXIT_ERROR


def cmd_video(args: argparse.Namespace) -> int:
    if args.start < 0 or (args.duration is not None and args.duration <= 0):
        raise InputError(f"--start {args.start} / --duration {args.duration}: need --start >= 0 and --duration > 0")
    job = VideoJob(
        input=args.input, output=args.output, batch=args.batch, start=args.start, duration=args.duration,
        compare=args.compare, encode=EncodeOptions(args.codec, args.crf, args.bitrate, args.preset),
        overwrite=args.overwrite, keep_partial=not args.no_partial,
    )
    check_paths(job)  # before the model loads: a refusal should be instant
    check_json_option(args.json, args.overwrite)
    model, engine = engine_from_args(args)
    preview = open_preview(args, f"derain: {args.input.name}")
    stats = Stats()

    @contextlib.contextmanager
    def on_start(source: Source, sink: Sink) -> Iterator[None]:
        guard_first_frame(args, engine, model, source, args.batch)
        console.print(
            f"{source.path}: {source.width}x{source.height} {source.layout.format}, "
            f"{float(source.rate or 0):.3g} fps, {len(source.passthrough)} stream(s) copied -> "
            f"{sink.path}: {sink.codec_name} {sink.layout.format}",
            style="dim",
        )
        with progress_bar(console, stats, source.expected_frames, args.input.name):
            yield

    try:
        with sigterm_as_exception():
            summary = run_video(job, engine, stats, on_start, preview)
    finally:
        if preview is not None:
            preview.close()
    if args.json:
        write_json(args.json, summary.to_dict())
    return report(summary)
