"""Synthetic rainy video with ground truth, and per-frame vs temporally fused deraining on it.

Clean video with real motion: a camera that pans and zooms over scikit-image's bundled sample
photographs (as `derain demo` does), two scenes with a cut between them, and a red ball
composited in that crosses each scene on its own path. Rain is `RainVideo`'s streak field
falling consistently from frame to frame (streaks move further each frame than they are long,
as fast drops do). Nothing is read from ../shared/data.

    python benchmarks/temporal_data.py OUT [--frames 24] [--measure] [--weights W] [--cost]

writes OUT/clean/NNNN.png, OUT/rainy/NNNN.png and OUT/rainy.mp4 (for `derain video`). With
--measure it derains the rainy frames once (built-in weights unless --weights), keeps them in
OUT/derained-NAME.npz (a later --measure with the same weights reuses them: trying a fusion rule
costs only flow and fusion), and prints a Markdown table of the input, the per-frame output and
--temporal 3, 5 and 7 with each fusion rule, centred as `derain eval-video OUT/rainy OUT/clean
--temporal K --fusion RULE` reports them, and causal as `derain live --temporal K` fuses. With
--cost it times the fusion of one 1280x720 frame with 2 neighbours (--temporal 3) on the CPU.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as samples

from derain.engines import build_engine
from derain.models.data import write_png
from derain.models.hub import load_model
from derain.models.metrics import to_uint8_truncated
from derain.models.synth import RainStyle, RainVideo
from derain.models.temporal import FUSION_RULES, fuse_sequence, fuse_window, removed_light
from derain.models.temporal_metrics import METRICS, VideoScore, derain_sequence, score_sequences
from derain.stream.demo import write_clip

WIDTH, HEIGHT = 160, 120
SCENES = ("coffee", "chelsea")
RAIN = RainStyle(density=0.004, length=14.0, angle=10.0, width=1.2, intensity=0.4)
SPEED = 22.0  # pixels a frame along the streaks


def camera(image: np.ndarray, t: float) -> np.ndarray:
    """The frame at time t in [0, 1]: a window panning left to right while zooming in by a third."""
    h, w = image.shape[:2]
    crop_h = int(min(h, w * HEIGHT / WIDTH) * (0.8 - 0.27 * t))
    crop_w = int(crop_h * WIDTH / HEIGHT)
    x = int((w - crop_w) * (0.15 + 0.7 * t))
    y = int((h - crop_h) * (0.5 - 0.25 * math.sin(math.pi * t)))
    return cv2.resize(image[y : y + crop_h, x : x + crop_w], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def ball(frame: np.ndarray, t: float, scene: int) -> np.ndarray:
    """`frame` with a shaded red ball composited in, antialiased, crossing the frame as t goes 0 -> 1."""
    cx = WIDTH * (0.1 + 0.8 * t) if scene % 2 == 0 else WIDTH * (0.9 - 0.8 * t)
    cy = HEIGHT * (0.3 + 0.4 * t * t)
    radius = 14.0
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    distance = np.hypot(xs - cx, ys - cy)
    alpha = np.clip(radius + 0.5 - distance, 0.0, 1.0)[..., None]
    shade = np.clip(1.0 - distance / (1.6 * radius), 0.3, 1.0)[..., None]
    colour = np.array([0.9, 0.15, 0.1], np.float32) * shade
    return frame * (1 - alpha) + colour * alpha


def clean_frames(per_scene: int) -> list[np.ndarray]:
    """Float32 RGB frames in [0, 1]: `per_scene` frames of each scene, a hard cut between them."""
    frames = []
    for s, name in enumerate(SCENES):
        image = getattr(samples, name)().astype(np.float32) / 255
        for k in range(per_scene):
            t = k / max(per_scene - 1, 1)
            frames.append(ball(camera(image, t), t, s).astype(np.float32))
    return frames


def make(out: Path, per_scene: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Write the clip; its (clean, rainy) float frames."""
    clean = clean_frames(per_scene)
    field = RainVideo(HEIGHT, WIDTH, RAIN, speed=SPEED, seed=11)
    rainy = [field.frame(frame, k)[0] for k, frame in enumerate(clean)]
    for folder, frames in (("clean", clean), ("rainy", rainy)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(frames):
            write_png(out / folder / f"{k:04d}.png", frame)
    write_clip(out / "rainy.mp4", rainy)
    return clean, rainy


def derained_once(out: Path, rainy_u8: list[np.ndarray], weights: str | None) -> list[np.ndarray]:
    """The rainy frames derained (float32 RGB), from OUT/derained-NAME.npz when there."""
    cache = out / f"derained-{Path(weights).stem if weights else 'builtin'}.npz"
    if cache.exists():
        return list(np.load(cache)["derained"])
    derained = derain_sequence(build_engine(load_model(weights), "eager", "cpu", "fp32").run, rainy_u8)
    np.savez_compressed(cache, derained=np.stack(derained))
    return derained


def measure(out: Path, clean: list[np.ndarray], rainy: list[np.ndarray], weights: str | None) -> None:
    """Print the Markdown table of per-frame and fused deraining on the clip."""
    to_u8 = lambda frame: (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)  # as the PNGs hold them
    clean_u8, rainy_u8 = [to_u8(f) for f in clean], [to_u8(f) for f in rainy]
    derained = derained_once(out, rainy_u8, weights)
    removed = [removed_light(r.astype(np.float32) / 255, d) for r, d in zip(rainy_u8, derained)]

    def scored(frames: list[np.ndarray]) -> VideoScore:
        return VideoScore(1, "", "clean", score_sequences(rainy_u8, [to_uint8_truncated(f) for f in frames], clean_u8))

    base = scored(derained)
    per_frame = np.array([f.output_psnr for f in base.frames])
    print("| run | PSNR (dB) | SSIM | warp error (1e-3) | flicker (luma codes) | worst / best frame (dB) |\n|---|---|---|---|---|---|")
    print("| rainy input | " + " | ".join(cell(base.mean("input", m), m) for m in METRICS) + " | |")
    print("| per frame | " + " | ".join(cell(base.mean("output", m), m) for m in METRICS) + " | |", flush=True)
    for causal in (False, True):
        for k in (3, 5, 7):
            for rule in FUSION_RULES:
                score = scored(fuse_sequence(derained, k, rule, removed, causal))
                change = np.array([f.output_psnr for f in score.frames]) - per_frame
                label = f"--temporal {k} --fusion {rule}" + (" (causal, live)" if causal else "")
                print(f"| {label} | " + " | ".join(cell(score.mean("output", m), m) for m in METRICS)
                      + f" | {change.min():+.2f} / {change.max():+.2f} |", flush=True)


def cost(repeats: int = 3) -> None:
    """Print the seconds one 1280x720 frame's fusion with 2 neighbours takes, each rule."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((720 + 8, 1280 + 8, 3)).astype(np.float32), (0, 0), 3.0)
    frames = [np.clip((base[k : k + 720, k : k + 1280] - 0.4) * 4, 0, 1) for k in range(3)]
    removed = [np.zeros((720, 1280), np.float32)] * 3
    for rule in FUSION_RULES:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fuse_window(frames, 1, rule, removed)
            times.append(time.perf_counter() - start)
        print(f"{rule}: {min(times):.3f} s (best of {repeats}) per 1280x720 frame, --temporal 3", flush=True)


def cell(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}", "warp_error": f"{value * 1e3:.3f}"}.get(metric, f"{value:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for clean/, rainy/ and rainy.mp4")
    parser.add_argument("--frames", type=int, default=24, help="frames per scene (two scenes)")
    parser.add_argument("--measure", action="store_true", help="derain and print per-frame vs fused figures")
    parser.add_argument("--weights", help="weights for --measure (default: the built-in ones)")
    parser.add_argument("--cost", action="store_true", help="time the fusion of a 1280x720 frame")
    args = parser.parse_args()
    clean, rainy = make(args.out, args.frames)
    print(f"{args.out}: {len(clean)} frames of {WIDTH}x{HEIGHT}, clean/ rainy/ rainy.mp4")
    if args.measure:
        measure(args.out, clean, rainy, args.weights)
    if args.cost:
        cost()


if __name__ == "__main__":
    main()
