"""`derain live SOURCE`: derain a camera or network stream as it comes.

SOURCE: rtsp://, rtsps://, http(s)://, udp://, tcp:// or srt:// URL; a camera (/dev/videoN,
v4l2:DEVICE or an index N); or a video file played at its own rate with --realtime.
Sinks, any combination: -o FILE (a recording, finalised on exit), --restream URL (RTSP
publish, or MPEG-TS over udp:// or tcp://), --display (a window, where a display exists).

Runs until the source ends for good (a file's end, or --reconnect-max failed tries) or
SIGINT/SIGTERM. With --temporal K each derained frame is fused with the K-1 frames before
it (a causal window: no frames of delay, only the fusion's compute). Exit status: 0 at the end of the source or on SIGINT/SIGTERM (the recording
finalised; a second Ctrl-C forces an immediate exit); 1 when the source did not come back;
2 when the source or a sink cannot be opened at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from derain.cli.eval_video import add_temporal_options
from derain.cli.options import EXIT_ERROR, EXIT_SIGINT, add_encode_options, add_engine_options

if TYPE_CHECKING:
    from rich.table import Table

    from derain.stream.decode import Source
    from derain.stream.live_pipeline import LiveReport, LiveStats

DROP_POLICIES = ("oldest", "every-nth")  # derain.stream.live_pipeline.DROP_POLICIES


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("live", help="derain a camera or network stream live (record, re-stream, display)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="stream URL, camera or (with --realtime) file")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="record the derained stream (.mkv survives a crash best)")
    p.add_argument("--restream", metavar="URL", help="send the derained stream on: rtsp://HOST:PORT/PATH, udp://HOST:PORT or tcp://HOST:PORT")
    p.add_argument("--display", action="store_true", help="show the output in a window, where a display exists")
    p.add_argument("--compare", action="store_true", help="input and derained side by side (twice the width)")
    p.add_argument("--realtime", action="store_true", help="SOURCE is a file: play it at its own frame rate, as a live source")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up on an open or read after S seconds without data (default 5)")
    p.add_argument("--reconnect-max", type=int, default=10, metavar="N", help="reconnect tries in a row before giving up (default 10; 0: end at the first drop); they count again once the source stays up 10 s")
    p.add_argument("--max-latency", type=float, default=500.0, metavar="MS", help="drop frames rather than output any later than MS after arrival (default 500)")
    p.add_argument("--drop-policy", choices=DROP_POLICIES, default="oldest",
                   help="when inference falls behind: drop the oldest waiting frames (freshest picture), or keep every Nth frame (even motion)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="FFmpeg input option, e.g. video_size=1280x720 for a camera (repeatable)")
    add_temporal_options(p)
    add_encode_options(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="append a JSON stats line every second, and the summary at the end")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    add_engine_options(p)
    p.set_defaults(func=run)


def input_options(pairs: list[str]) -> dict[str, str]:
    from derain.models.errors import InputError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option {pair!r}: give KEY=VALUE, e.g. --option video_size=1280x720")
        options[key] = value
    return options


@contextlib.contextmanager
def second_interrupt_forces() -> Iterator[None]:
    """The first Ctrl-C stops the job cleanly; a second one, while it finalises, exits at once."""
    from derain.cli.console import err

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def force(signum: int, frame: object) -> None:
        err.print("derain: forced to stop; the recording may not be playable", style="red")
        os._exit(EXIT_SIGINT)

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, force)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _panel(stats: LiveStats, title: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    snap = stats.snapshot()
    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("state", Text.assemble(snap["state"], "  ", (stats.detail, "dim")))
    table.add_row("fps in / out", f"{snap['fps_in']:5.1f} / {snap['fps_out']:5.1f}")
    table.add_row("frames in / out / dropped", f"{snap['frames_in']} / {snap['frames_out']} / {snap['dropped']}")
    table.add_row("reconnects", str(snap["reconnects"]))
    latency = " / ".join("-" if snap[f"latency_ms_{q}"] is None else f"{snap[f'latency_ms_{q}']:.0f}" for q in ("p50", "p95", "p99"))
    table.add_row("latency ms p50 / p95 / p99", latency)
    return table


@contextlib.contextmanager
def live_panel(stats: LiveStats, title: str) -> Iterator[None]:
    """A rich panel refreshed four times a second on a terminal; state changes as lines elsewhere."""
    from rich.live import Live

    from derain.cli.console import err
    from derain.stream.stats import periodic

    if not err.is_terminal:
        stats.on_change(lambda state, detail: err.print(f"derain live: {state}{': ' + detail if detail else ''}", style="dim"))
        yield
        return
    with Live(_panel(stats, title), console=err, refresh_per_second=4, transient=False) as panel:
        try:
            with periodic(0.25, lambda: panel.update(_panel(stats, title)), "derain-live-panel"):
                yield
        finally:
            panel.update(_panel(stats, title))


def report(summary: LiveReport, debug: bool = False) -> int:
    from derain.cli.console import error, out, traceback_of, warn

    s = summary.stats
    latency = ", ".join(f"{q} {s[f'latency_ms_{q}']:.0f} ms" for q in ("p50", "p95", "p99") if s[f"latency_ms_{q}"] is not None)
    out.print(
        f"{summary.source}: {s['frames_in']} frames in, {s['frames_out']} out, {s['dropped']} dropped, "
        + (f"{s['corrupt_packets']} corrupt packet(s) skipped, " if s["corrupt_packets"] else "")
        + f"{s['reconnects']} reconnect(s) in {s['seconds']:.1f} s; latency {latency or 'not measured'}"
    )
    if summary.recording_written:
        out.print(f"recording: {summary.output}")
    for warning in summary.warnings:
        warn(warning)
    if summary.error:
        if debug and summary.exception is not None:
            traceback_of(summary.exception)
        error(summary.error)
        return EXIT_ERROR
    out.print(f"stopped: {summary.stopped_by}", style="dim")
    return 0


def default_preset(args: argparse.Namespace) -> str | None:
    """veryfast for x264/x265: the recording must keep up with the stream on a few cores."""
    from derain.stream.encode import CODEC_BY_SUFFIX

    codec = args.codec or (CODEC_BY_SUFFIX.get(args.output.suffix.lower()) if args.output else None)
    return "veryfast" if codec in ("libx264", "libx265") else None


def run(args: argparse.Namespace) -> int:
    import derain
    from derain.cli.console import err, warn
    from derain.cli.options import check_json_option, engine_options, open_preview
    from derain.cli.video import sigterm_as_exception
    from derain.stream.live_pipeline import LiveStats, json_lines
    from derain.stream.pipeline import Terminated

    options = input_options(args.option)
    check_json_option(args.json, overwrite=True)  # appended to, but its folder must be there
    preview = open_preview(args, f"derain live: {args.source}")
    stats = LiveStats()

    @contextlib.contextmanager
    def on_start(first: Source) -> Iterator[None]:
        err.print(f"{args.source}: {first.width}x{first.height} {first.layout.format}, {float(first.rate or 0):.3g} fps", style="dim")
        with contextlib.ExitStack() as stack:
            if args.json:  # opened once frames flow: a source refused up front leaves no file
                stack.enter_context(json_lines(args.json, stats))
            stack.enter_context(live_panel(stats, f"derain live: {args.source}"))
            yield

    with contextlib.ExitStack() as stack:
        if preview is not None:
            stack.callback(preview.close)
        try:
            with second_interrupt_forces(), sigterm_as_exception():
                summary = derain.live(
                    args.source, output=args.output, restream=args.restream, realtime=args.realtime, timeout=args.timeout,
                    reconnect_max=args.reconnect_max, max_latency=args.max_latency / 1000, drop_policy=args.drop_policy,
                    compare=args.compare, temporal=args.temporal, fusion=args.fusion, codec=args.codec, crf=args.crf, bitrate=args.bitrate,
                    preset=args.preset or default_preset(args), input_options=options, overwrite=args.overwrite,
                    on_start=on_start, stats=stats, preview=preview, **engine_options(args),
                )
        except (KeyboardInterrupt, Terminated):
            # Only a stop while the source was being opened gets here; later ones end the run
            # inside the job. A stop is a normal end for a live job, so still exit 0.
            warn(f"stopped before {args.source} delivered a frame; nothing recorded")
            return 0
    if args.json and args.json.exists():
        with args.json.open("a", encoding="utf-8") as lines:
            lines.write(json.dumps(summary.to_dict()) + "\n")
    return report(summary, args.show_traceback)
