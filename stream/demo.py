"""The clips of `derain demo`: clean scenes panned over scikit-image's bundled sample
photographs (no download), rain from `derain.models.synth.RainVideo` (a streak field that falls
consistently from frame to frame), written and read back as the pipeline converts frames."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from skimage import data as samples

from derain.models.synth import RainStyle, RainVideo
from derain.stream.color import from_rgb, to_rgb
from derain.stream.pixels import ColorSpec, fill_frame, frame_planes, layout_of

WIDTH, HEIGHT, FPS, SECONDS_PER_SCENE = 160, 120, 20, 1.0
# Colour photographs that ship inside scikit-image's wheel (the others need pooch and a network).
SCENES = ("astronaut", "coffee", "chelsea")
RAIN = RainStyle(density=0.006, length=16.0, angle=12.0, width=1.2, intensity=0.45)  # about 21 dB rainy PSNR
CRF = 12  # high enough quality that the codec does not hide the rain or the gain
# x264's lookahead and macroblock tree gave different bits from run to run for the same frames
# in a process that had run torch (decoded frames up to 42 levels apart); without them the
# demo's clips are the same on every run.
REPRODUCIBLE = {"crf": str(CRF), "x264-params": "rc-lookahead=0:mbtree=0"}


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


def rainy_frames(clean: list[np.ndarray]) -> list[np.ndarray]:
    """The same rain over the clean frames on every run."""
    field = RainVideo(HEIGHT, WIDTH, RAIN, speed=9.0, seed=7)
    return [field.frame(frame, k)[0] for k, frame in enumerate(clean)]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    """H.264 4:2:0 with the same float->YUV conversion the pipeline uses (rounded, BT.601)."""
    spec = ColorSpec.of(layout_of("yuv420p"), 6, 1, frames[0].shape[0])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 6, 1
        stream.options = REPRODUCIBLE
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
        stream.options = REPRODUCIBLE
        for k, (a, b) in enumerate(zip(left, right)):
            frame = av.VideoFrame(2 * w, h, "yuv420p")
            fill_frame(frame, layout_of("yuv420p"), [np.hstack((pa, pb)) for pa, pb in zip(a, b)])
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
