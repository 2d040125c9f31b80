"""What the `derain video` pipeline costs around the engine: identity engine vs a plain transcode.

Both sides decode the same 720p clip with PyAV (frame threading) and encode it with the same
encoder and settings (the `derain video` defaults: libx264, CRF 18, x264's default preset);
the pipeline side also converts every frame to float RGB and back and runs an identity
engine. Runs alternate (plain, pipeline, plain, ...) so that load from other processes hits
all sides alike; the best run of each side is compared.

    python benchmarks/pipeline_overhead.py [--frames 90] [--repeats 3] [--device cpu]
        [--conversion default torch skip]

`--conversion` names the pipeline variants to run side by side: `default` is what `derain
video` does (the numba kernels on the CPU, torch ops on a GPU), `torch` forces the torch ops
(the GPU path, run here on the CPU), `skip` swaps the conversion for a copy of the planes, to
show what the threads, queues and copies cost on their own.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

import derain.stream.pipeline as pipeline_module
from derain.benchmarks.end_to_end import make_rainy_clip, transcode
from derain.benchmarks.harness import measure
from derain.stream import color
from derain.stream.color import from_rgb, to_rgb
from derain.stream.encode import DEFAULT_CRF, EncodeOptions
from derain.stream.pipeline import VideoJob, one_thread, run_video
from derain.stream.pixels import BT709, RANGE_LIMITED, ColorSpec, layout_of

WIDTH, HEIGHT, FPS = 1280, 720, 30


class IdentityEngine:
    """The cheapest engine there is: what the pipeline costs is all that is left."""

    backend, precision, dtype, build_seconds = "identity", "fp32", torch.float32, 0.0

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        return batch


def _skipped() -> tuple[Callable, Callable]:
    """Planes passed through unconverted (a copy, as conversion makes new planes)."""
    held: list[torch.Tensor] = []

    def planes_in(planes: list[torch.Tensor], spec: ColorSpec) -> torch.Tensor:
        held[:] = [p.clone() for p in planes]
        return torch.zeros(planes[0].shape[0], 3, 1, 1)

    return planes_in, lambda rgb, spec: list(held)


CONVERSIONS: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "default": lambda: (to_rgb, from_rgb),
    "torch": lambda: (color._torch_to_rgb, color._torch_from_rgb),
    "skip": _skipped,
}


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (x264's and the decoder's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def conversion_ms(to_rgb: Callable, from_rgb: Callable, iterations: int = 30) -> tuple[float, float]:
    """Median ms of to_rgb and from_rgb for one 720p 4:2:0 frame, on one thread as in the pipeline."""
    spec = ColorSpec.of(layout_of("yuv420p"), BT709, RANGE_LIMITED, HEIGHT)
    gen = torch.Generator().manual_seed(0)
    planes = [torch.randint(16, 236, (1, h, w), dtype=torch.uint8, generator=gen) for h, w in spec.layout.plane_shapes(WIDTH, HEIGHT)]
    rgb = to_rgb(planes, spec)
    cpu = torch.device("cpu")
    with one_thread():
        rgb_in = measure(lambda p: to_rgb(p, spec), [planes], 3, iterations, 1, cpu)
        rgb_out = measure(lambda x: from_rgb(x, spec), [rgb], 3, iterations, 1, cpu)
    return rgb_in.percentile_ms(50), rgb_out.percentile_ms(50)


def pipeline(src: Path, dst: Path, device: torch.device, batch: int, conversion: tuple[Callable, Callable]) -> tuple[int, float, dict]:
    dst.unlink(missing_ok=True)
    pipeline_module.to_rgb, pipeline_module.from_rgb = conversion
    try:
        summary = run_video(VideoJob(src, dst, batch=batch, encode=EncodeOptions()), IdentityEngine(device))
    finally:
        pipeline_module.to_rgb, pipeline_module.from_rgb = to_rgb, from_rgb
    return summary.frames, summary.seconds, summary.stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--conversion", nargs="+", choices=CONVERSIONS, default=["default"], help="pipeline variants to run side by side")
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = {name: CONVERSIONS[name]() for name in dict.fromkeys(args.conversion)}
    seconds: dict[str, list[float]] = {name: [] for name in ["plain", *variants]}
    cpu: dict[str, list[float]] = {name: [] for name in seconds}
    stages: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rain720.mp4"
        make_rainy_clip(src, args.frames, WIDTH, HEIGHT, FPS)
        for _ in range(args.repeats):
            before = cpu_seconds()
            run = transcode(src, Path(tmp) / "plain.mp4")
            cpu["plain"].append(cpu_seconds() - before)
            seconds["plain"].append(run["seconds"])
            frames = run["frames"]
            for name, conversion in variants.items():
                before = cpu_seconds()
                frames_p, seconds_p, stages_p = pipeline(src, Path(tmp) / "derain.mp4", device, args.batch, conversion)
                cpu[name].append(cpu_seconds() - before)
                assert frames_p == frames, (frames_p, frames)
                if not seconds[name] or seconds_p < min(seconds[name]):
                    stages[name] = dict(stages_p)
                seconds[name].append(seconds_p)
    best_plain = min(seconds["plain"])
    print(f"{args.frames} frames {WIDTH}x{HEIGHT}, libx264 CRF {DEFAULT_CRF['libx264']}, device {device}, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}")
    print(f"{'':40}{'best s':>8}{'fps':>8}{'/ plain':>9}{'CPU ms/frame':>14}   all runs (s)")
    for name, runs in seconds.items():
        label = "plain PyAV decode+encode" if name == "plain" else f"pipeline, identity, {name} conversion"
        print(f"{label:40}{min(runs):8.2f}{frames / min(runs):8.1f}{best_plain / min(runs):9.1%}"
              f"{1000 * min(cpu[name]) / frames:14.1f}   {' '.join(f'{s:.2f}' for s in runs)}")
    print("target: pipeline >= 90% of plain; CPU time is the least of the runs, all threads (x264's included)")
    for name, busy in stages.items():
        print(f"stage busy time, {name}, ms/frame: " + ", ".join(f"{k} {1000 * v / frames:.1f}" for k, v in busy.items() if v))
    for name in ("default", "torch"):
        if name in variants:
            rgb_in, rgb_out = conversion_ms(*variants[name])
            print(f"{name} conversion alone, on the CPU, one thread, one frame (median): to_rgb {rgb_in:.2f} ms, from_rgb {rgb_out:.2f} ms")


if __name__ == "__main__":
    main()
