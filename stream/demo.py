"""`derain demo`: a rainy clip made here, derained, compared, with the PSNR gain it brought.

The clean scenes are scikit-image's bundled sample photographs (no download), panned slowly;
the rain is `derain.models.synth.RainVideo`, a streak field that falls consistently from
frame to frame. Because the clean frames are known, the demo can say how many dB the
derained video gained over the rainy one, measured on the decoded files.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from rich.text import Text
from skimage import data as samples

from derain.models.errors import InputError
from derain.models.metrics import psnr
from derain.models.synth import RainStyle, RainVideo
from derain.stream.color import from_rgb, to_rgb
from derain.stream.encode import EncodeOptions
from derain.stream.options import add_engine_options, console, engine_from_args
from derain.stream.pipeline import VideoJob, run_video, signals_deferred
from derain.stream.pixels import ColorSpec, fill_frame, frame_planes, layout_of
from derain.stream.stats import Stats, progress_bar
from derain.stream.video import report

WIDTH, HEIGHT, FPS, SECONDS_PER_SCENE = 160, 120, 20, 1.0
# Colour photographs that ship inside scikit-image's wheel (the others need pooch and a network).
SCENES = ("astronaut", "coffee", "chelsea")
NAMES = ("rainy", "derained", "compare")  # the three clips a run leaves in its folder
RAIN = RainStyle(density=0.006, length=16.0, angle=12.0, width=1.2, intensity=0.45)  # about 21 dB rainy PSNR
CRF = 12  # high enough quality that the codec does not hide the rain or the gain


def clean_frames(width: int = WIDTH, height: int = HEIGHT, fps: int = FPS) -> list[np.ndarray]:
    """Float RGB frames in [0, 1]: each scene is a slow pan across one sample photograph."""
    frames = []
    per_scene = round(SECONDS_PER_SCENE * fps)
    for name in SCENES:
        image = getattr(samples, name)().astype(np.float32) / 255
        h, w = image.shape[:2]
        crop_h = int(min(h, w * height / width) * 0.7)
        crop_w = int(crop_h * width / height)
        for k in range(per_scene):
            t = k / max(per_scene - 1, 1)
            x = int((w - crop_w) * (0.2 + 0.6 * t))
            y = int((h - crop_h) * (0.5 - 0.2 * math.sin(math.pi * t)))
            window = image[y : y + crop_h, x : x + crop_w]
            frames.append(cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    """H.264 4:2:0 with the same float->YUV conversion the pipeline uses (rounded, BT.601)."""
    spec = ColorSpec.of(layout_of("yuv420p"), 6, 1, frames[0].shape[0])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 6, 1
        stream.options = {"crf": str(CRF)}
        for k, rgb in enumerate(frames):
            planes = from_rgb(torch.from_numpy(rgb).permute(2, 0, 1)[None], spec)
            frame = av.VideoFrame(rgb.shape[1], rgb.shape[0], "yuv420p")
            fill_frame(frame, spec.layout, [values[0].numpy() for values in planes])
            frame.pts, frame.time_base = k, Fraction(1, fps)
            frame.colorspace, frame.color_range = 6, 1
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def read_clip(path: Path) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """(planes, float RGB (H, W, 3)) of every frame, converted as the pipeline converts."""
    result = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            layout = layout_of(frame.format.name)
            spec = ColorSpec.of(layout, frame.colorspace, frame.color_range, frame.height)
            planes = [p.copy() for p in frame_planes(frame, layout)]
            rgb = to_rgb([torch.from_numpy(p)[None] for p in planes], spec).clamp(0, 1)[0].permute(1, 2, 0).numpy()
            result.append((planes, rgb))
    return result


def side_by_side(path: Path, left: list[list[np.ndarray]], right: list[list[np.ndarray]], fps: int = FPS) -> None:
    """Two 4:2:0 clips next to each other, joined in YUV (no second pass through the model)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        h, w = left[0][0].shape
        stream.width, stream.height, stream.pix_fmt = 2 * w, h, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 6, 1
        stream.options = {"crf": str(CRF)}
        for k, (a, b) in enumerate(zip(left, right)):
            frame = av.VideoFrame(2 * w, h, "yuv420p")
            fill_frame(frame, layout_of("yuv420p"), [np.hstack((pa, pb)) for pa, pb in zip(a, b)])
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be at least 1")
    _, engine = engine_from_args(args)  # first: missing weights should stop the demo before any work
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    # Made in a scratch folder and moved in at the end: a rerun that fails or is stopped leaves
    # the last run's clips as they were.
    with tempfile.TemporaryDirectory(prefix=".derain-demo-", dir=outdir) as scratch:
        rainy_path, derained_path, compare_path = (Path(scratch) / f"{n}.mp4" for n in NAMES)
        clean = clean_frames()
        field = RainVideo(HEIGHT, WIDTH, RAIN, speed=9.0, seed=7)
        rainy = [field.frame(frame, k)[0] for k, frame in enumerate(clean)]
        write_clip(rainy_path, rainy)
        console.print(f"{len(rainy)} frames of {WIDTH}x{HEIGHT} rain over {', '.join(SCENES)} (scikit-image samples)")

        stats = Stats()
        job = VideoJob(rainy_path, derained_path, batch=args.batch, encode=EncodeOptions(crf=CRF), keep_partial=False)

        def on_start(source, sink):  # noqa: ANN001, ANN202 - run_video's hook
            return progress_bar(console, stats, source.expected_frames, "derain")

        summary = run_video(job, engine, stats, on_start)
        summary.input, summary.output = str(outdir / rainy_path.name), str(outdir / derained_path.name)  # where they land
        status = report(summary)
        if status:
            console.print(f"derain: {outdir}: the demo's files from before are unchanged", style="yellow", soft_wrap=True)
            return status
        rainy_read, derained_read = read_clip(rainy_path), read_clip(derained_path)
        side_by_side(compare_path, [p for p, _ in rainy_read], [p for p, _ in derained_read])
        before = np.mean([psnr(rgb, ref) for (_, rgb), ref in zip(rainy_read, clean)])
        after = np.mean([psnr(rgb, ref) for (_, rgb), ref in zip(derained_read, clean)])
        with signals_deferred():
            for path in (rainy_path, derained_path, compare_path):
                os.replace(path, outdir / path.name)
    console.print(f"{outdir}: {', '.join(f'{n}.mp4' for n in NAMES)} (compare: rainy | derained, side by side)")
    console.print(Text.assemble(
        f"PSNR against the clean frames (RGB, decoded files): rainy {before:.2f} dB, derained {after:.2f} dB, gain ",
        (f"{after - before:+.2f} dB", "bold"),
    ))
    return 0


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="make a short rainy clip, derain it, and show the PSNR gain (no download)")
    p.add_argument("-o", "--output", default="derain-demo", metavar="DIR", help="folder for rainy.mp4, derained.mp4, compare.mp4 (default: derain-demo)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="frames per engine call")
    add_engine_options(p)
    p.set_defaults(func=cmd_demo)
