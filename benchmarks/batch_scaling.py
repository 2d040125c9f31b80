"""What `derain batch` buys over a loop of `derain video`: the same clips, three ways.

    sequential   `derain video CLIP -o OUT` once per clip (each loads torch and the model)
    workers 1    `derain batch CLIPS -o OUT --workers 1` (one engine, an embedded Ray)
    workers 2    `derain batch CLIPS -o OUT --workers 2`

Every side is the command as a user runs it, start-up included (Ray's start, each worker's
import and engine build), with the built-in weights on the CPU. Prints a table and writes
the figures as JSON.

    python benchmarks/batch_scaling.py [--clips 4] [--frames 30] [--size 160x120]
        [--workers 1 2] [--json batch_scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from derain.benchmarks.end_to_end import make_rainy_clip


def timed(argv: list[str]) -> float:
    """Wall seconds of one command, which must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def derain_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "derain", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", default="160x120", help="WIDTHxHEIGHT of each clip")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = root / "clips"
        clips.mkdir()
        for k in range(args.clips):
            make_rainy_clip(clips / f"clip{k}.mp4", args.frames, width, height)
        frames = args.clips * args.frames
        rows: list[dict[str, object]] = []

        out = root / "sequential"
        out.mkdir()
        seconds = sum(timed(derain_command("video", str(clip), "-o", str(out / clip.name), "--device", "cpu"))
                      for clip in sorted(clips.iterdir()))
        rows.append({"side": "sequential derain video", "seconds": seconds})
        for workers in args.workers:
            seconds = timed(derain_command("batch", str(clips), "-o", str(root / f"batch{workers}"), "--device", "cpu",
                                           "--workers", str(workers)))
            rows.append({"side": f"derain batch --workers {workers}", "seconds": seconds})

    base = float(rows[0]["seconds"])  # type: ignore[arg-type]
    print(f"{args.clips} clips x {args.frames} frames at {width}x{height}, built-in weights, CPU, {os.cpu_count()} cores")
    print("| side | seconds | frames/s | speed-up |\n|---|---|---|---|")
    for row in rows:
        seconds = float(row["seconds"])  # type: ignore[arg-type]
        row["fps"], row["speedup"] = frames / seconds, base / seconds
        print(f"| {row['side']} | {seconds:.1f} | {frames / seconds:.2f} | x{base / seconds:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"clips": args.clips, "frames": args.frames, "size": [width, height],
                                         "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
