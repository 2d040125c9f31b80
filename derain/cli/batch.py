"""`derain batch INPUT... -o OUTDIR`: many videos and images at once, on Ray workers on this
machine or a Ray cluster; resumable, nothing lost.

INPUT is a video or image file, a folder (searched recursively) or @LIST (a file naming one
input per line). Each output mirrors its input's path below the folder it was found in;
videos keep their name and container, images become .png. Every input and OUTDIR must be
paths that every worker sees (on a cluster: a shared filesystem mounted at the same place).

Each output is written as .NAME.part.SUFFIX and renamed when whole. OUTDIR/.derain-batch.jsonl
records every file, so a rerun skips the files already done with the same options (--force
redoes them). A file whose worker dies is retried on a fresh worker (--retries).

--temporal K fuses each video's frames with their neighbours as `derain video --temporal K`
does; images, single frames, are derained on their own (a folder may hold both).

Needs Ray: pip install 'derain[ray]'. Without --address, an embedded local Ray runs the job.

Exit status: 0 every file done or skipped; 1 some failed; 2 bad input or options (nothing
done), or a worker that cannot be replaced; 130 Ctrl-C and 143 SIGTERM. A job stopped early
cancels its running files and records them as interrupted: a rerun does them.
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
from derain.cli.options import EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM, add_encode_options, add_engine_options, whole_number

if TYPE_CHECKING:
    from derain.batching import BatchReport, FileResult


def non_negative(text: str) -> float:
    """An argparse type: a number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of at least 0")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", help="derain many videos and images on Ray workers, resumably",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video or image files, folders, or @LIST files (paths every worker sees)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder (a path every worker sees)")
    p.add_argument("--batch", type=whole_number(1), default=1, metavar="N", help="frames per engine call (default 1; 4-8 helps on a GPU)")
    add_temporal_options(p)
    add_encode_options(p)
    p.add_argument("--workers", type=whole_number(1), metavar="N", help="Ray workers, each with its own engine (default: one per GPU, else half the cores)")
    p.add_argument("--gpus-per-worker", type=non_negative, metavar="F", help="GPUs each worker holds (default: 1 where there are GPUs, else 0)")
    p.add_argument("--address", metavar="ADDR", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: an embedded local Ray)")
    p.add_argument("--retries", type=whole_number(0), default=2, metavar="N", help="retry a file whose worker died up to N times (default 2)")
    p.add_argument("--force", action="store_true", help="redo files the record says are done")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the summary (per file, seconds, fps, workers) as JSON")
    add_engine_options(p)
    p.set_defaults(func=run)


def show(result: FileResult) -> None:
    """A file's outcome as it comes: done and skipped on stdout, failures on stderr."""
    from derain.cli.console import error, out

    if result.status == "failed":
        error(result.error or f"{result.input}: failed")
    elif result.status != "interrupted":
        out.print(f"{result.status}: {result.input} -> {result.output} ({result.frames} frames)")


def summarise(report: BatchReport) -> int:
    """The closing line on stdout; the exit status for the report."""
    from derain.cli.console import out, warn

    if report.interrupted:
        warn(f"interrupted ({'SIGTERM' if report.interrupted == 'stopped' else report.interrupted}); cancelled: {', '.join(report.cancelled) or 'none running'}")
    out.print(f"derain batch: {report.done} done, {report.failed} failed, {report.skipped} skipped "
              f"in {report.seconds:.1f} s ({report.fps:.2f} fps) on {len(report.workers)} worker(s)")
    if report.interrupted:
        return EXIT_SIGTERM if report.interrupted == "stopped" else EXIT_SIGINT
    return EXIT_ERROR if report.failed else 0


def run(args: argparse.Namespace) -> int:
    import derain
    from derain.cli.options import check_json_option, engine_options, write_json
    from derain.cli.progress import BatchBar

    check_json_option(args.json, overwrite=True)
    bar = BatchBar()
    terminated = threading.Event()
    with sigterm_sets(terminated), bar.shown():
        report = derain.batch(
            args.inputs, args.output, batch=args.batch, temporal=args.temporal, fusion=args.fusion, codec=args.codec, crf=args.crf, bitrate=args.bitrate, preset=args.preset,
            workers=args.workers, gpus_per_worker=args.gpus_per_worker, address=args.address, retries=args.retries,
            force=args.force, on_progress=bar.update, on_file=show, stop=terminated, **engine_options(args),
        )
    if args.json:
        write_json(args.json, report.to_dict())
    return summarise(report)


@contextlib.contextmanager
def sigterm_sets(event: threading.Event) -> Iterator[None]:
    """SIGTERM sets `event` (the job stops between two waits) rather than raising in the middle
    of Ray's own calls, which turn an exception from a handler into a SystemError."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
