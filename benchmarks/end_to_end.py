"""End-to-end mode (`derain bench --input VIDEO`): where the time goes outside the model.

Each engine row also runs the whole video pipeline (decode, colour conversion, engine, encode)
on the file, and the run measures a plain PyAV transcode of the same file (decode and re-encode
with the pipeline's codec and quality, nothing in between): the pipeline cannot beat the
transcode, nor the model-only figure, so the two bound it from above.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from derain.engines import Engine
from derain.models.synth import RainStyle, RainVideo
from derain.stream.decode import open_source
from derain.stream.demo import clean_frames
from derain.stream.encode import CODEC_BY_SUFFIX, DEFAULT_CRF
from derain.stream.pipeline import VideoJob, run_video
from derain.stream.stats import Stats

# Outputs go to .mkv: it holds any stream the input may carry, and names the pipeline's codec.
SUFFIX = ".mkv"


def video_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first video stream."""
    source = open_source(path)
    try:
        return source.width, source.height
    finally:
        source.close()


def transcode(path: Path, output: Path) -> dict[str, object]:
    """Decode every frame and encode it again, as a user would with PyAV alone."""
    codec = CODEC_BY_SUFFIX[SUFFIX]
    start = time.perf_counter()
    frames = 0
    with av.open(str(path)) as src, av.open(str(output), "w") as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        vout = dst.add_stream(codec, rate=vin.average_rate or vin.guessed_rate or 25)
        vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
        formats = {f.name for f in av.codec.Codec(codec, "w").video_formats or ()}
        vout.pix_fmt = vin.codec_context.pix_fmt if vin.codec_context.pix_fmt in formats else "yuv420p"
        vout.options = {"crf": str(DEFAULT_CRF[codec])}
        for frame in src.decode(vin):
            for packet in vout.encode(frame):
                dst.mux(packet)
            frames += 1
        for packet in vout.encode(None):
            dst.mux(packet)
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "codec": codec, "crf": DEFAULT_CRF[codec]}


def end_to_end(engine: Engine, path: Path, batch: int, output: Path, model_fps: float) -> dict[str, object]:
    """The video pipeline on `path` with an engine already built and warm for `batch` frames."""
    summary = run_video(VideoJob(input=path, output=output, batch=batch, overwrite=True), engine, Stats())
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    report = summary.to_dict()
    return {
        "fps": summary.fps,
        "frames": summary.frames,
        "seconds": summary.seconds,
        "share_of_model_only": summary.fps / model_fps,
        "stages_ms_per_frame": {name: stage["ms_per_frame"] for name, stage in report["stages"].items()},
        "bottleneck": max(summary.stages, key=summary.stages.get),
        "error": summary.error,
    }


def make_rainy_clip(path: Path, frames: int, width: int, height: int, fps: int = 30) -> None:
    """Rainy H.264 footage for timing: panned sample photographs, falling streaks, sensor noise."""
    scenes = clean_frames(width, height, fps)
    rain = RainVideo(height, width, RainStyle(density=0.004, length=30.0, angle=10.0, width=1.5, intensity=0.4), speed=20.0, seed=1)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for k in range(frames):
            rainy, _ = rain.frame(scenes[k % len(scenes)], k)
            noisy = np.clip(rainy + rng.normal(0, 0.01, rainy.shape).astype(np.float32), 0, 1)
            frame = av.VideoFrame.from_ndarray((noisy * 255 + 0.5).astype(np.uint8), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
