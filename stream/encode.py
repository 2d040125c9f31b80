"""The output side: a video stream that repeats the input's timing and tags, plus remuxed packets.

The video keeps the input's time base and every frame's pts (variable frame rate survives),
its size, display matrix and colour tags. Audio and subtitle streams are copied packet by
packet (`add_stream_from_template`), never decoded, and interleaved by time with the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from derain.models.errors import OutputError
from derain.stream.decode import Source
from derain.stream.pixels import PixelLayout, fill_frame, layout_of

# Codec by output suffix; anything else gets the container's own default.
CODEC_BY_SUFFIX = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                   ".webm": "libvpx-vp9", ".avi": "mjpeg"}
CRF_CODECS = {"libx264": "crf", "libx265": "crf", "libvpx-vp9": "crf", "libvpx": "crf", "libsvtav1": "crf"}
PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}
# JPEG is full-range YUV: these encoders refuse studio-swing YUV unless told to break the standard.
FULL_RANGE_CODECS = {"mjpeg", "ljpeg"}
# Tags the muxer writes itself; copying the input's would state the input's encoder and length.
MUXER_TAGS = {"encoder", "duration", "major_brand", "minor_version", "compatible_brands"}
# x264/x265's default CRF 23 visibly softens the fine texture deraining is meant to reveal.
DEFAULT_CRF = {"libx264": 18, "libx265": 20}


@dataclass(frozen=True)
class EncodeOptions:
    codec: str | None = None
    crf: float | None = None
    bitrate: str | None = None
    preset: str | None = None
    tune: str | None = None  # x264/x265 only, e.g. zerolatency for a live stream


def parse_bitrate(text: str) -> int:
    """'4M', '800k' or '1500000' in bits per second."""
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise OutputError(f"bitrate={text!r}: give bits per second, e.g. 4M or 800k") from None
    if value <= 0:
        raise OutputError(f"bitrate={text!r}: must be positive")
    return int(value)


def choose_codec(path: Path, options: EncodeOptions, container: av.container.OutputContainer) -> str:
    name = options.codec or CODEC_BY_SUFFIX.get(path.suffix.lower()) or container.default_video_codec
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise OutputError(f"codec={name!r}: no such encoder in this FFmpeg build (try libx264, libx265, libvpx-vp9, ffv1, mjpeg)") from None
    if codec.type != "video":
        raise OutputError(f"codec={name!r}: is not a video encoder")
    return codec.name


def choose_layout(source_layout: PixelLayout, codec: av.codec.Codec, width: int, height: int) -> PixelLayout:
    """The input's own pixel format where the encoder takes it, else the nearest one it takes.

    Subsampled chroma needs even sizes in most encoders; an odd-sized frame goes out as 4:4:4
    of the same depth rather than being cropped or padded, so the size stays what it was.
    """
    offered = [f.name for f in codec.video_formats or []]
    usable = []
    for name in offered:
        try:
            layout = layout_of(name)
        except Exception:
            continue
        sx, sy = layout.chroma_shift
        if (width % (1 << sx)) or (height % (1 << sy)):
            continue
        if codec.name in FULL_RANGE_CODECS and layout.family == "yuv" and not layout.format.startswith("yuvj"):
            continue
        usable.append(layout)
    if not usable:
        raise OutputError(f"encoder {codec.name} takes no planar pixel format for {width}x{height}; choose another `codec`")

    def distance(layout: PixelLayout) -> tuple:
        return (
            layout.format != source_layout.format,
            layout.family != source_layout.family,
            abs(layout.bits - source_layout.bits) if layout.bits >= source_layout.bits else 100 + source_layout.bits - layout.bits,
            layout.chroma_shift != source_layout.chroma_shift,
            -(layout.chroma_shift[0] + layout.chroma_shift[1]) if source_layout.family == "gray" else 0,
            layout.format.startswith("yuvj"),
        )

    return min(usable, key=distance)


class Sink:
    """An output container with one encoded video stream and the remuxed passthrough streams."""

    def __init__(self, path: Path | str, source: Source, options: EncodeOptions, width: int | None = None,
                 time_base: Fraction | None = None, format: str | None = None,
                 container_options: dict[str, str] | None = None, passthrough: bool = True) -> None:
        """`path` is a file, or with `format` a URL to stream to. A live job passes its own
        `time_base` (the pts given to `write` are then in it, not in the source's) and no
        passthrough, as its source changes over reconnects while the sink stays open."""
        self.path = path
        self.source = source
        self.width = width or source.width
        self.height = source.height
        self.time_base = time_base or source.time_base
        self.frame_slot: Fraction | None = None  # set for AVI, which has a frame rate but no timestamps
        self.last_pts = -1
        self.frames = 0
        self.packets = 0
        try:
            self.container = av.open(str(path), "w", format=format, container_options=container_options or {})
        except (av.error.FFmpegError, ValueError, OSError) as err:
            why = getattr(err, "strerror", None) or err
            if format is not None:
                raise OutputError(f"{path}: cannot open it for {format} output ({why})") from None
            raise OutputError(f"{path}: cannot write this kind of file ({why}); use .mp4, .mkv, .webm or .avi") from None
        try:
            self._add_video(options)
            self.streams: dict[int, av.stream.Stream] = {}
            if passthrough:
                self._add_passthrough()
                self._copy_tags()
        except BaseException:
            self.container.close()
            if isinstance(path, Path):
                path.unlink(missing_ok=True)
            raise

    def _add_video(self, options: EncodeOptions) -> None:
        source = self.source
        codec_name = choose_codec(Path(self.path), options, self.container)
        codec = av.codec.Codec(codec_name, "w")
        self.layout = choose_layout(source.layout, codec, self.width, self.height)
        self.color = source.color.with_layout(self.layout)
        rate = source.rate if source.rate else Fraction(25)
        stream = self.container.add_stream(codec_name, rate=rate)
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = self.layout.format
        if self.container.format.name == "avi":
            # AVI states its rate as 1/time_base: a fine time base would claim thousands of fps
            # and fill every gap between frames with empty chunks.
            self.frame_slot = 1 / rate
        stream.time_base = self.frame_slot or self.time_base
        stream.codec_context.time_base = self.frame_slot or self.time_base
        cc = stream.codec_context
        tags = dict(source.tags)
        if self.color.full_range:
            tags["color_range"] = 2
        for name, value in tags.items():
            setattr(cc, name, value)
        self.tags = tags
        codec_options: dict[str, str] = {}
        crf = options.crf if options.crf is not None else (DEFAULT_CRF.get(codec_name) if options.bitrate is None else None)
        if crf is not None:
            if codec_name not in CRF_CODECS:
                raise OutputError(f"`crf`: encoder {codec_name} has no CRF; use `bitrate`, or codec='libx264'")
            codec_options[CRF_CODECS[codec_name]] = f"{crf:g}"
            if codec_name.startswith("libvpx"):
                cc.bit_rate = 0  # constant quality needs b:v 0 in libvpx
        if options.bitrate is not None:
            cc.bit_rate = parse_bitrate(options.bitrate)
        if options.preset is not None:
            if codec_name not in PRESET_CODECS:
                raise OutputError(f"`preset`: encoder {codec_name} has no presets; drop `preset`")
            codec_options["preset"] = options.preset
        if options.tune is not None and codec_name in PRESET_CODECS:
            codec_options["tune"] = options.tune
        stream.options = codec_options
        if source.video.sample_aspect_ratio:
            cc.sample_aspect_ratio = source.video.sample_aspect_ratio  # anamorphic DV/DVD video keeps its shape
        try:
            # Opened now so that options the encoder refuses are a refusal before any frame is read.
            cc.open()
        except (av.error.FFmpegError, ValueError) as err:
            given = " ".join(f"{k}={v}" for k, v in codec_options.items())
            raise OutputError(
                f"encoder {codec_name} refuses its settings ({getattr(err, 'strerror', None) or err}; {given or 'defaults'}); "
                "check `preset`, `crf` and `bitrate`"
            ) from None
        if source.display_matrix is not None:
            stream.set_display_matrix(source.display_matrix)
        self.video = stream
        self.codec_name = codec_name

    def _add_passthrough(self) -> None:
        supported = self.container.supported_codecs
        for stream in self.source.passthrough:
            name = stream.codec_context.name if stream.codec_context else None
            if name and supported and name not in supported:
                raise OutputError(
                    f"{self.path}: a {self.path.suffix} file cannot hold the input's {stream.type} stream #{stream.index} "
                    f"({name}); choose an output type that can (.mkv holds almost anything)"
                )
            if name == "aac" and not stream.codec_context.extradata and self.container.format.name == "avi":
                # AAC from MPEG-TS carries its setup in ADTS headers; AVI needs it up front and
                # FFmpeg's AVI muxer does not convert it.
                raise OutputError(
                    f"{self.path}: a .avi file cannot hold the input's ADTS AAC audio (stream #{stream.index}); "
                    "write .mkv or .mp4, which convert it"
                )
            self.streams[stream.index] = self.container.add_stream_from_template(stream)
        for stream in self.source.container.streams:
            if stream.type != "attachment":
                continue
            name = stream.name or f"attachment-{stream.index}"
            if self.container.format.name != "matroska":
                raise OutputError(
                    f"{self.path}: a {self.path.suffix} file cannot hold the input's attachment #{stream.index} ({name}); "
                    "write .mkv, which can"
                )
            # Fonts for the subtitles, cover art: written with the header, they need no packets.
            self.container.add_attachment(name, stream.mimetype or "application/octet-stream", bytes(stream.data))

    def _copy_tags(self) -> None:
        """Title, language, creation time and the rest, as ffmpeg copies them by default."""
        pairs = [(self.source.container, self.container), (self.source.video, self.video)]
        pairs += [(stream, self.streams[stream.index]) for stream in self.source.passthrough]
        for old, new in pairs:
            new.metadata.update({key: value for key, value in old.metadata.items() if key.lower() not in MUXER_TAGS})

    def _shift(self, time_base: Fraction) -> int:
        """How far packets in `time_base` move so that the first wanted frame lands at 0."""
        return round(self.source.start_pts * self.source.time_base / time_base) if self.source.start_pts else 0

    def write(self, planes: list[np.ndarray], pts: int) -> None:
        frame = av.VideoFrame(self.width, self.height, self.layout.format)
        fill_frame(frame, self.layout, planes)
        pts -= self.source.start_pts
        if self.frame_slot is not None:
            # Each frame takes its nearest free slot, so a late or early one moves, never vanishes.
            pts = max(self.last_pts + 1, round(pts * self.time_base / self.frame_slot))
        self.last_pts = pts
        frame.pts = pts
        frame.time_base = self.frame_slot or self.time_base
        for name, value in self.tags.items():
            setattr(frame, name, value)
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self.remux(until=frame.pts * frame.time_base)

    def remux(self, until: Fraction | None = None) -> None:
        """Mux the set-aside packets up to `until` seconds of output time (all of them with None)."""
        queue = self.source.packets
        while queue:
            packet = queue[0]
            if until is not None and packet.pts is not None:
                shift = self._shift(packet.time_base)
                if (packet.pts - shift) * packet.time_base > until:
                    return
            queue.popleft()
            self._mux_copy(packet)

    def _mux_copy(self, packet: av.Packet) -> None:
        shift = self._shift(packet.time_base)
        if shift:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        packet.stream = self.streams[packet.stream.index]
        self.container.mux(packet)
        self.packets += 1

    def close(self, remux_rest: bool = True) -> None:
        """Drain the encoder and finalise the file: after this it plays, however the job ended."""
        try:
            for packet in self.video.encode(None):
                self.container.mux(packet)
            if remux_rest:
                self.remux()
        finally:
            self.container.close()
