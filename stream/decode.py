"""The input side: open a file, find its video stream, decode frames with their timestamps.

Audio and subtitle packets are never decoded: they are set aside, untouched, for the encoder
to remux. The first frame is decoded when the file is opened, because only a frame carries
the pixel format, colour tags and display matrix that the output must repeat.
"""

from __future__ import annotations

import collections
import math
import numbers
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from derain.models.errors import InputError
from derain.stream.pixels import ColorSpec, PixelLayout, frame_planes, layout_of, planar_format

PASSTHROUGH_TYPES = ("audio", "subtitle")
# Before PyAV 19 a tag in another encoding than UTF-8 failed the whole open under the default
# "strict"; PyAV 19 reads tags as UTF-8 with surrogateescape (byte exact) and dropped the option.
OPEN_OPTIONS: dict[str, str] = {"metadata_errors": "replace"} if int(av.__version__.split(".")[0]) < 19 else {}


@dataclass
class Frame:
    """One decoded frame: its planes (views that keep the AVFrame alive) and its timestamp."""

    planes: list[np.ndarray]
    pts: int
    index: int


@dataclass
class Source:
    """An opened input: the container, its video stream and what the output must repeat."""

    path: Path | str  # a URL or device for live sources
    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    passthrough: list[av.stream.Stream]
    layout: PixelLayout
    color: ColorSpec
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    tags: dict[str, int]  # colour tags as AVColor* values, copied to the output
    display_matrix: list[int] | None
    start_pts: int  # pts (video time base) that becomes 0 in the output; 0 without --start
    end_pts: int | None  # first pts not wanted (from --duration)
    expected_frames: int  # 0 when unknown
    corrupt_packets: int = 0  # video packets the decoder rejected and that were skipped, as ffmpeg skips them
    # Packets of the passthrough streams, in file order, waiting for the encoder.
    packets: collections.deque = field(default_factory=collections.deque)
    _frames: Iterator[av.VideoFrame] | None = None
    _first: av.VideoFrame | None = None

    def close(self) -> None:
        self.container.close()

    def planes(self, frame: av.VideoFrame) -> list[np.ndarray]:
        if frame.format.name != self.layout.format:
            frame = frame.reformat(format=self.layout.format)
        return frame_planes(frame, self.layout)

    def first_planes(self) -> list[np.ndarray]:
        """The first wanted frame's planes, before decoding proper starts (for checks on real content)."""
        if self._first is None:
            raise RuntimeError("the first frame has already been handed on")
        return self.planes(self._first)


def _display_matrix(frame: av.VideoFrame) -> list[int] | None:
    """The 3x3 display matrix (rotation and flips) as FFmpeg stores it, or None."""
    data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    raw = bytes(data) if data is not None else b""
    return list(struct.unpack("<9i", raw)) if len(raw) == 36 else None


def open_source(path: str | Path, start: float = 0.0, duration: float | None = None) -> Source:
    """Open `path`, seek to `start` seconds, decode the first frame; errors say what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        container = av.open(str(path), **OPEN_OPTIONS)
    except (av.error.InvalidDataError, av.error.FFmpegError) as err:
        raise InputError(f"{path}: cannot be read as a video ({_reason(err)}); is it a complete video file?") from None
    try:
        return _open_streams(path, container, start, duration)
    except BaseException:
        container.close()
        raise


def open_url(
    url: str, format: str | None = None, options: dict[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
) -> Source:
    """Open a live source (network URL or device) and decode its first frame.

    `timeout` is (open, read) in seconds: PyAV's interrupt callback gives up on any open or
    read that waits longer, whatever the protocol. Errors are `av.error.FFmpegError` (or an
    OSError such as ConnectionRefusedError) for the caller to retry or report.
    """
    container = av.open(url, format=format, options=options or {}, timeout=timeout, **OPEN_OPTIONS)
    try:
        # Slice threading: frame threading holds back one frame per thread, which is latency.
        # No passthrough: audio cannot be kept in step with video over reconnects and drops.
        return _open_streams(url, container, 0.0, None, thread_type="SLICE", passthrough=False)
    except BaseException:
        container.close()
        raise


def rational(value: numbers.Rational | None) -> Fraction | None:
    """A stream's rate as a Fraction, None when unset: PyAV 19 gives `av.AVRational` (0/1 when
    unset), older releases a Fraction or None."""
    return Fraction(value) if value else None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _open_streams(path: Path | str, container: av.container.InputContainer, start: float, duration: float | None,
                  thread_type: str = "AUTO", passthrough: bool = True) -> Source:
    if not container.streams.video:
        raise InputError(f"{path}: holds no video stream")
    video = container.streams.video[0]
    video.thread_type = thread_type  # AUTO: frame threading, several times faster than slice threading on files
    passthrough = [s for s in container.streams if s.type in PASSTHROUGH_TYPES] if passthrough else []
    time_base = Fraction(video.time_base)
    # --start and --duration count from the stream's first timestamp, which need not be 0 (MPEG-TS).
    origin = video.start_time or 0
    first_pts = origin + int(math.floor(start / time_base))
    start_pts = first_pts if start > 0 else 0
    if start > 0:
        _seek(path, container, video, first_pts, start)
    end_pts = first_pts + int(math.ceil(duration / time_base)) if duration is not None else None
    rate = rational(video.average_rate) or rational(video.guessed_rate)
    source = Source(
        path=path, container=container, video=video, passthrough=passthrough,
        layout=layout_of("gray"), color=ColorSpec.of(layout_of("gray"), 2, 0, 1),
        width=0, height=0, time_base=time_base, rate=rate, tags={}, display_matrix=None,
        start_pts=start_pts, end_pts=end_pts, expected_frames=_expected_frames(video, start, duration, rate),
    )
    source._frames = _decode(source)
    first = next(source._frames, None)
    if first is None:
        where = f" at or after start={start}" if start > 0 else ""
        raise InputError(f"{path}: its video stream holds no frames{where}; nothing to derain")
    fmt = planar_format(first.format.name)
    source.layout = layout_of(fmt)
    source.width, source.height = first.width, first.height
    source.tags = {
        "color_range": first.color_range, "colorspace": first.colorspace,
        "color_primaries": first.color_primaries, "color_trc": first.color_trc,
    }
    source.color = ColorSpec.of(source.layout, first.colorspace, first.color_range, first.height)
    source.display_matrix = _display_matrix(first)
    source._first = first
    return source


def _seek(path: Path | str, container: av.container.InputContainer, video: av.video.stream.VideoStream,
          target: int, start: float) -> None:
    """Seek to a point from which decoding reaches `target` from at or before it.

    A seek in a file without an index (MPEG-TS) can land after the keyframe it was asked for, or
    nowhere at all; then the frames up to the target would be missing, so seek again from further
    back, and in the end decode from the beginning of the file (the frames before `target` are
    decoded and dropped).
    """
    seconds = 1 / video.time_base
    try:
        for back in (0, 1, 4, 16, 64):
            point = max(target - int(back * seconds), video.start_time or 0)
            container.seek(point, stream=video, backward=True)
            reached = next((f.pts for packet in container.demux(video) for f in _decoded(packet) if f.pts is not None), None)
            if reached is not None and reached <= target:
                container.seek(point, stream=video, backward=True)
                return
        container.seek(0)
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot seek to start={start} ({_reason(err)})") from None


def _decoded(packet: av.Packet) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except av.error.InvalidDataError:
        return []


def _expected_frames(video: av.video.stream.VideoStream, start: float, duration: float | None, rate: Fraction | None) -> int:
    if duration is not None and rate:
        return int(duration * rate)
    total = video.frames
    if not total and video.duration and rate:
        total = int(video.duration * video.time_base * rate)
    if total and start > 0 and rate:
        total = max(0, total - int(start * rate))
    return total


def _decode(source: Source) -> Iterator[av.VideoFrame]:
    """Video frames in [start, end) in presentation order; passthrough packets go to `source.packets`."""
    wanted = [source.video, *source.passthrough]
    start_time = source.start_pts * source.time_base
    end_time = source.end_pts * source.time_base if source.end_pts is not None else None
    for packet in source.container.demux(wanted):
        if packet.stream.type != "video":
            if packet.pts is not None and (source.start_pts or end_time is not None):
                t = packet.pts * packet.time_base
                if t < start_time or (end_time is not None and t >= end_time):
                    continue
            if packet.size:
                source.packets.append(packet)
            continue
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:
            source.corrupt_packets += 1
            continue
        for frame in decoded:
            if frame.pts is not None and frame.pts < source.start_pts:
                continue
            if source.end_pts is not None and frame.pts is not None and frame.pts >= source.end_pts:
                return
            yield frame


def frames(source: Source) -> Iterator[Frame]:
    """Every wanted frame as planes in `source.layout`, with a pts that never goes backwards."""
    assert source._frames is not None and source._first is not None
    step = int(1 / (source.rate * source.time_base)) if source.rate else 1
    last = None
    index = 0
    pending: list[av.VideoFrame] = [source._first]
    source._first = None
    while True:
        frame = pending.pop() if pending else next(source._frames, None)
        if frame is None:
            return
        if (frame.width, frame.height) != (source.width, source.height):
            raise InputError(
                f"{source.path}: frame {index} is {frame.width}x{frame.height}, the first was "
                f"{source.width}x{source.height}; size changes inside a stream are not supported"
            )
        # Frames without a timestamp (some AVI/raw streams) get the next one at the stream's rate.
        pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
        if last is not None and pts <= last:
            pts = last + 1
        last = pts
        yield Frame(source.planes(frame), pts, index)
        index += 1
