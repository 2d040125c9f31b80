"""Small real videos written with PyAV, and readers that decode them back for the checks.

No torch here: the video I/O tests (test_io.py) use these on an install without it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def picture(width: int, height: int, k: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 frame k: smooth colour gradients, a moving square, mild noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), 0.5 + 0.4 * np.sin((xx + yy + 3 * k) / 7)], -1)
    side = max(4, min(width, height) // 4)
    x0, y0 = (3 * k) % max(1, width - side), (2 * k) % max(1, height - side)
    rgb[y0 : y0 + side, x0 : x0 + side] = (0.9, 0.2, 0.1)
    noise = np.random.default_rng(seed + k).normal(0, 0.02, rgb.shape)
    return (np.clip(rgb + noise, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_video(
    path: Path,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    size: tuple[int, int] = (64, 48),
    frames: int = 10,
    rate: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    subtitles: bool = False,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    color_range: int | None = None,
    colorspace: int | None = None,
    attachments: dict[str, tuple[str, bytes]] | None = None,
) -> Path:
    """Write a test video; `pts` (in `time_base`) makes it variable frame rate; `attachments`
    maps a file name to its (MIME type, bytes), Matroska only."""
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if time_base is not None:
            video.time_base = time_base
            video.codec_context.time_base = time_base
        video.options = options or {}
        if rotation is not None:
            video.set_display_rotation(rotation)
        if color_range is not None:
            video.codec_context.color_range = color_range
        if colorspace is not None:
            video.codec_context.colorspace = colorspace
        astream = out.add_stream(audio, rate=48000, layout="stereo") if audio else None
        sstream = out.add_stream("mov_text") if subtitles else None
        for name, (mimetype, data) in (attachments or {}).items():
            out.add_attachment(name, mimetype, data)
        out.start_encoding()  # writes the header even when no frame follows
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(width, height, k), format="rgb24").reformat(format=pix_fmt)
            frame.pts = pts[k] if pts is not None else k
            frame.time_base = time_base or Fraction(1, rate)
            if color_range is not None:
                frame.color_range = color_range
            if colorspace is not None:
                frame.colorspace = colorspace
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if astream is not None:
            seconds = (pts[-1] * (time_base or Fraction(1, rate)) if pts else Fraction(frames, rate))
            _write_tone(out, astream, float(seconds))
        del sstream  # an empty subtitle track is enough to check that it is carried over
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    samples = int(48000 * seconds)
    t = np.arange(samples, dtype=np.float32) / 48000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunk = 1024
    for i in range(0, samples, chunk):
        piece = np.stack([tone[i : i + chunk]] * 2)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="fltp", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def remux(src: Path, dst: Path, shift: int = 0) -> Path:
    """Copy every stream of `src` into `dst` (the container its suffix names), timestamps moved
    `shift` seconds later."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            offset = int(shift / packet.time_base)
            packet.pts, packet.dts, packet.stream = packet.pts + offset, packet.dts + offset, streams[packet.stream.index]
            out.mux(packet)
    return dst


def make_resizing_mjpeg(path: Path, frames: int = 20, change_at: int = 13) -> Path:
    """MJPEG in AVI whose pictures grow from 64x48 to 96x64 at frame `change_at`: each packet is
    its own picture, so a real stream can do this halfway."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        bigger = av.CodecContext.create("mjpeg", "w")
        bigger.width, bigger.height, bigger.pix_fmt, bigger.time_base = 96, 64, "yuvj420p", Fraction(1, 25)
        for k in range(frames):
            encoder, (w, h) = (stream.codec_context, (64, 48)) if k < change_at else (bigger, (96, 64))
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 10 * k, np.uint8), format="rgb24").reformat(format="yuvj420p")
            frame.pts = k
            for packet in encoder.encode(frame):
                packet.stream, packet.pts, packet.dts = stream, k, k
                out.mux(packet)
    return path


def video_info(path: Path) -> dict:
    """Frame count, pts, sizes, tags and the raw planes of the first video stream; audio packets."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info: dict = {
            "time_base": video.time_base, "width": video.width, "height": video.height,
            "codec": video.codec_context.name, "pts": [], "planes": [], "rotation": None,
            "format": None, "color_range": None, "colorspace": None,
            "audio": [], "streams": [s.type for s in container.streams],
        }
        for packet in container.demux():
            if packet.stream.type == "audio" and packet.size:
                info["audio"].append((packet.pts, bytes(packet)))
            if packet.stream.type != "video":
                continue
            for frame in packet.decode():
                info["pts"].append(frame.pts)
                info["format"] = frame.format.name
                info["rotation"] = frame.rotation
                info["color_range"], info["colorspace"] = frame.color_range, frame.colorspace
                info["planes"].append([np.array(p) for p in _planes(frame)])
    return info


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    from derain.stream.pixels import frame_planes, layout_of

    return frame_planes(frame, layout_of(frame.format.name))


def corrupt_jpeg(path: Path, index: int) -> None:
    """Zero the first 600 bytes of the `index`-th JPEG in an MJPEG file: the decoder rejects that packet."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[index] : starts[index] + 600] = bytes(600)
    path.write_bytes(bytes(data))
