"""Pixel formats and colour tags of decoded frames, and their planes as numpy views.

Everything the container side needs to know about pixels without the model's maths: which
planar layout a frame travels in, the matrix and range that turn its codes into RGB
(`ColorSpec`), and copying planes out of and into `av.VideoFrame`s. The conversion to and
from float RGB lives in color.py; this module needs neither torch nor OpenCV, so the video
I/O layer (decode, encode, sources) imports without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from derain.models.errors import InputError

# AVColorSpace value -> (Kr, Kb)
MATRICES: dict[int, tuple[float, float]] = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG (same as BT.601)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
    10: (0.2627, 0.0593),  # BT.2020 constant luminance, approximated by the NCL matrix
}
BT601, BT709, UNSPECIFIED = 6, 1, 2
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2

# Packed and semi-planar formats are unpacked (losslessly) to the planar format of the same
# sampling and depth before they reach the pipeline.
UNPACK = {
    "nv12": "yuv420p", "nv21": "yuv420p", "nv16": "yuv422p", "nv24": "yuv444p",
    "yuyv422": "yuv422p", "uyvy422": "yuv422p", "p010le": "yuv420p10le", "p016le": "yuv420p16le",
}


class ColorError(InputError):
    """A pixel format the pipeline cannot carry."""


@dataclass(frozen=True)
class PixelLayout:
    """How a frame's pixels sit in its planes: planar YUV, gray or planar RGB (GBR order)."""

    format: str
    family: str  # "yuv", "gray" or "gbr"
    bits: int
    chroma_shift: tuple[int, int]  # log2 subsampling (horizontal, vertical)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bits <= 8 else "<u2")

    @property
    def planes(self) -> int:
        return 1 if self.family == "gray" else 3

    def plane_shapes(self, width: int, height: int) -> list[tuple[int, int]]:
        sx, sy = self.chroma_shift
        chroma = (-(-height >> sy), -(-width >> sx))
        return [(height, width)] + [chroma] * (self.planes - 1)


def layout_of(fmt: str) -> PixelLayout:
    """The layout of a pixel format the pipeline reads and writes without any swscale pass."""
    f = av.VideoFormat(fmt)
    comps = [c for c in f.components if not c.is_alpha]
    bits = comps[0].bits
    if f.is_big_endian or f.has_palette or f.is_bayer or bits > 16 or any(c.bits != bits for c in comps):
        raise ColorError(f"pixel format {fmt} is not supported")
    if len(comps) == 1 and comps[0].is_luma:
        return PixelLayout(fmt, "gray", bits, (0, 0))
    planes = [c.plane for c in comps]
    if len(comps) != 3 or sorted(planes) != [0, 1, 2]:
        raise ColorError(f"pixel format {fmt} is packed; unpack it first")
    probe = 64
    shift = ((probe // f.chroma_width(probe)).bit_length() - 1, (probe // f.chroma_height(probe)).bit_length() - 1)
    if f.is_rgb:
        if not fmt.startswith("gbr"):
            raise ColorError(f"pixel format {fmt} is not planar GBR")
        return PixelLayout(fmt, "gbr", bits, (0, 0))
    return PixelLayout(fmt, "yuv", bits, shift)


def planar_format(fmt: str) -> str:
    """`fmt` if the pipeline reads it directly, else the planar format to reformat it to."""
    try:
        layout_of(fmt)
        return fmt
    except ColorError:
        pass
    if fmt in UNPACK:
        return UNPACK[fmt]
    f = av.VideoFormat(fmt)
    deep = max(c.bits for c in f.components) > 8
    if f.is_rgb:
        return "gbrp16le" if deep else "gbrp"
    return "yuv444p16le" if deep else "yuv444p"


@dataclass(frozen=True)
class ColorSpec:
    """Layout plus the numbers that turn code values into RGB: matrix coefficients and range."""

    layout: PixelLayout
    kr: float
    kb: float
    full_range: bool

    @classmethod
    def of(cls, layout: PixelLayout, colorspace: int, color_range: int, height: int) -> ColorSpec:
        if colorspace not in MATRICES:
            colorspace = BT709 if height >= 720 else BT601
        kr, kb = MATRICES[colorspace]
        full = color_range == RANGE_FULL or layout.format.startswith("yuvj") or layout.family == "gbr"
        return cls(layout, kr, kb, full)

    def with_layout(self, layout: PixelLayout) -> ColorSpec:
        full = self.full_range or layout.format.startswith("yuvj") or layout.family == "gbr"
        return ColorSpec(layout, self.kr, self.kb, full)

    def _scale(self) -> tuple[float, float, float, float]:
        """(luma offset, luma span, chroma centre, chroma span) in code values."""
        top = (1 << self.layout.bits) - 1
        if self.full_range:
            return 0.0, float(top), float(1 << (self.layout.bits - 1)), float(top)
        unit = float(1 << (self.layout.bits - 8))
        return 16 * unit, 219 * unit, 128 * unit, 224 * unit

    @property
    def max_code(self) -> int:
        return (1 << self.layout.bits) - 1


def frame_planes(frame: av.VideoFrame, layout: PixelLayout) -> list[np.ndarray]:
    """Views of the frame's planes without line padding (no copy; they keep the frame alive)."""
    views = []
    for plane, (h, w) in zip(frame.planes, layout.plane_shapes(frame.width, frame.height)):
        rows = np.frombuffer(plane, dtype=layout.dtype)
        views.append(rows.reshape(-1, plane.line_size // layout.dtype.itemsize)[:h, :w])
    return views


def fill_frame(frame: av.VideoFrame, layout: PixelLayout, planes: list[np.ndarray]) -> None:
    """Copy plane arrays into a frame allocated with `layout.format`."""
    for plane, array, (h, w) in zip(frame.planes, planes, layout.plane_shapes(frame.width, frame.height)):
        rows = np.frombuffer(plane, dtype=layout.dtype)
        rows.reshape(-1, plane.line_size // layout.dtype.itemsize)[:h, :w] = array
