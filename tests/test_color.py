"""Colour conversion against the textbook formula, and the exact round trip the pipeline relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derain.stream import color
from derain.stream.color import from_rgb, to_rgb
from derain.stream.pixels import BT601, BT709, RANGE_FULL, RANGE_LIMITED, ColorSpec, layout_of

CASES = [
    ("yuv420p", BT709, RANGE_LIMITED, 36, 64),
    ("yuv420p", BT601, RANGE_FULL, 35, 63),  # odd: the last chroma row and column cover half blocks
    ("yuvj420p", BT601, RANGE_FULL, 16, 24),
    ("yuv422p", BT601, RANGE_LIMITED, 20, 30),
    ("yuv444p", BT709, RANGE_LIMITED, 12, 18),
    ("yuv420p10le", 9, RANGE_LIMITED, 24, 40),  # BT.2020
    ("yuv444p16le", BT709, RANGE_FULL, 8, 10),
    ("yuv410p", BT601, RANGE_LIMITED, 19, 30),  # 4x4 chroma blocks, partial at both edges
    ("yuv440p", BT709, RANGE_LIMITED, 13, 20),  # vertical subsampling only
]


def planes_for(spec: ColorSpec, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    _, _, coff, _ = spec._scale()
    top = spec.max_code
    out = []
    for k, (h, w) in enumerate(spec.layout.plane_shapes(width, height)):
        # Mid-range chroma keeps the colours mostly in gamut, as real video does.
        codes = rng.integers(0, top + 1, (2, h, w)) if k == 0 else np.clip(rng.normal(coff, top / 10, (2, h, w)), 0, top).astype(np.int64)
        dtype = torch.uint8 if spec.layout.bits <= 8 else torch.int16
        out.append(torch.from_numpy(codes.astype(np.uint16 if dtype == torch.int16 else np.uint8).view(np.int16 if dtype == torch.int16 else np.uint8)))
    return out


def reference_rgb(planes: list[torch.Tensor], spec: ColorSpec, height: int, width: int) -> np.ndarray:
    """BT.601/709/2020 decoding in float64, chroma replicated: written from the standards' equations."""
    yoff, yspan, coff, cspan = spec._scale()
    codes = [p.numpy().view(np.uint16) if p.dtype == torch.int16 else p.numpy() for p in planes]
    y = (codes[0].astype(np.float64) - yoff) / yspan
    sx, sy = spec.layout.chroma_shift
    cb, cr = ((c.astype(np.float64) - coff) / cspan for c in codes[1:])
    cb, cr = (c.repeat(1 << sy, 1).repeat(1 << sx, 2)[:, :height, :width] for c in (cb, cr))
    kr, kb = spec.kr, spec.kb
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.stack((r, g, b), 1)


# On the CPU to_rgb/from_rgb run the numba kernels; the torch ops are what runs on a GPU.
IMPLEMENTATIONS = {"cpu-numba": (to_rgb, from_rgb), "torch": (color._torch_to_rgb, color._torch_from_rgb)}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("fmt", "matrix", "color_range", "height", "width"), CASES)
def test_to_rgb_matches_the_standard_and_round_trips_exactly(
    fmt: str, matrix: int, color_range: int, height: int, width: int, impl: str
) -> None:
    to_rgb, from_rgb = IMPLEMENTATIONS[impl]
    spec = ColorSpec.of(layout_of(fmt), matrix, color_range, height)
    planes = planes_for(spec, height, width)
    rgb = to_rgb(planes, spec)
    assert rgb.shape == (2, 3, height, width) and rgb.dtype == torch.float32
    np.testing.assert_allclose(rgb.numpy(), reference_rgb(planes, spec, height, width), atol=2e-6 * max(1, spec.max_code / 255))
    back = from_rgb(rgb, spec)
    for k, (a, b) in enumerate(zip(planes, back)):
        assert a.dtype == b.dtype and torch.equal(a, b), f"plane {k} changed in the round trip"


@pytest.mark.parametrize(("fmt", "matrix", "color_range", "height", "width"), CASES)
def test_the_implementations_encode_alike(fmt: str, matrix: int, color_range: int, height: int, width: int) -> None:
    """Model output is not on the code grid: both ways round it (and average chroma blocks) alike."""
    spec = ColorSpec.of(layout_of(fmt), matrix, color_range, height)
    rgb = torch.from_numpy(np.random.default_rng(3).uniform(-0.05, 1.05, (2, 3, height, width)).astype(np.float32))
    for k, (a, b) in enumerate(zip(from_rgb(rgb, spec), color._torch_from_rgb(rgb, spec))):
        a, b = (p.numpy().view(np.uint16) if p.dtype == torch.int16 else p.numpy() for p in (a, b))
        assert a.dtype == b.dtype and a.shape == b.shape
        # Float summation order differs, so a value within a hair of a rounding tie may go either way.
        diff = np.abs(a.astype(np.int64) - b)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, f"plane {k}"
    # Non-contiguous input (an HWC image seen as CHW), half precision and a tensor that
    # requires grad (a model's output outside no_grad) convert as the float32 tensor does.
    hwc = rgb.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert all(torch.equal(a, b) for a, b in zip(from_rgb(hwc, spec), from_rgb(rgb, spec)))
    assert all(torch.equal(a, b) for a, b in zip(from_rgb(rgb.requires_grad_(), spec), from_rgb(hwc, spec)))
    half = rgb.detach().half()
    assert all(torch.equal(a, b) for a, b in zip(from_rgb(half, spec), from_rgb(half.float(), spec)))


def test_planes_that_do_not_fit_the_format_are_refused() -> None:
    spec = ColorSpec.of(layout_of("yuv444p"), BT709, RANGE_LIMITED, 64)
    luma, chroma = torch.zeros(1, 64, 64, dtype=torch.uint8), torch.zeros(1, 32, 32, dtype=torch.uint8)
    with pytest.raises(color.ColorError, match="yuv444p"):
        to_rgb([luma, chroma, chroma], spec)
    with pytest.raises(color.ColorError, match="expected"):
        to_rgb([torch.zeros(2, 64, 64, dtype=torch.uint8), luma, luma], spec)


def test_the_kernels_load_where_no_cache_can_be_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only install with no writable home: numba finds no cache folder; the kernels still compile and run."""
    import importlib.util
    import tempfile

    from derain.stream import yuv_kernels

    def unwritable(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Read-only file system")

    spec = importlib.util.spec_from_file_location("yuv_kernels_read_only", yuv_kernels.__file__)
    fresh = importlib.util.module_from_spec(spec)
    # numba checks a cache folder by creating a temporary file in it (numba/core/caching.py).
    with monkeypatch.context() as patch, pytest.warns(UserWarning, match="cannot cache.*NUMBA_CACHE_DIR"):
        patch.setattr(tempfile, "TemporaryFile", unwritable)
        spec.loader.exec_module(fresh)
    assert {type(k._cache).__name__ for k in (fresh.yuv_to_rgb, fresh.rgb_to_yuv)} == {"NullCache"}
    rng = np.random.default_rng(0)
    y = rng.integers(16, 236, (1, 4, 6), dtype=np.uint8)
    u, v = (rng.integers(16, 241, (1, 2, 3), dtype=np.uint8) for _ in range(2))
    args = (np.float32(1 / 219), np.array([1.6, -0.39, -0.81, 2.0], np.float32), np.zeros(3, np.float32), 1, 1)
    expected, out = np.empty((1, 3, 4, 6), np.float32), np.empty((1, 3, 4, 6), np.float32)
    yuv_kernels.yuv_to_rgb(y, u, v, expected, *args)
    fresh.yuv_to_rgb(y, u, v, out, *args)
    np.testing.assert_array_equal(out, expected)
