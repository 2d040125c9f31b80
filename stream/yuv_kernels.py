"""Planar YUV <-> float RGB on the CPU in one pass over each frame (numba).

The conversion is memory-bound: composed from whole-plane array operations it reads and writes
an 11 MB float frame several times at 720p and leaves the encoder's caches cold. Here each
output row is made from rows that sit in L1, so the float frame is written once on the way in
and read once on the way out (benchmarks/RESULTS.md: the round trip of a 720p 4:2:0 frame
takes 1.8 ms of one core against 3.3 for OpenCV's arithmetic).

The maths is color.py's, with its constants passed in: replication of chroma on the way in,
the mean of the same block on the way out (a partial block at an odd edge is filled out by
repeating its last row and column), rounding to nearest with ties up, and saturation to
[0, top], where NaN becomes 0. Both kernels release the GIL, so the decoder's and the
encoder's Python keeps running beside them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

_JIT = {"nogil": True, "boundscheck": False}


def _kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """Compile `func` with its machine code cached on disk, or uncached where no cache can be written.

    numba caches beside the source or in the user's cache folder; on a read-only install with no
    writable home it finds neither and refuses to decorate, which would make the module unimportable.
    Then each process compiles the kernels once (about a second) instead.
    """
    try:
        return numba.njit(cache=True, **_JIT)(func)
    except RuntimeError as err:
        if "cannot cache" not in str(err):
            raise
        warnings.warn(f"{err}: the colour kernels compile in every process; set NUMBA_CACHE_DIR to a writable folder", stacklevel=2)
        return numba.njit(**_JIT)(func)


@_kernel
def yuv_to_rgb(y, u, v, out, scale, matrix, bias, sx, sy):  # noqa: ANN001, ANN201 - numba infers the types
    """out (B, 3, H, W) float32 = y * scale + matrix @ (u, v) + bias, chroma replicated over its block.

    matrix holds (R from V, G from U, G from V, B from U); y, u, v are (B, h, w) codes.
    """
    batch, height, width = y.shape
    mrv, mgu, mgv, mbu = matrix[0], matrix[1], matrix[2], matrix[3]
    br, bg, bb = bias[0], bias[1], bias[2]
    red = np.empty(width, np.float32)
    green = np.empty(width, np.float32)
    blue = np.empty(width, np.float32)
    for b in range(batch):
        for i in range(height):
            if i & ((1 << sy) - 1) == 0:
                # Chroma's share of R, G and B along the row, spread to full width once per block row.
                ur, vr = u[b, i >> sy], v[b, i >> sy]
                for j in range(width):
                    cu, cv = np.float32(ur[j >> sx]), np.float32(vr[j >> sx])
                    red[j] = mrv * cv + br
                    green[j] = mgu * cu + mgv * cv + bg
                    blue[j] = mbu * cu + bb
            yr, r, g, bl = y[b, i], out[b, 0, i], out[b, 1, i], out[b, 2, i]
            for j in range(width):
                luma = np.float32(yr[j]) * scale
                r[j] = luma + red[j]
                g[j] = luma + green[j]
                bl[j] = luma + blue[j]


@numba.njit(inline="always")
def _code(x, top):  # noqa: ANN001, ANN202
    # `x` already carries +0.5: truncation of the clamped value rounds to nearest.
    if not x > 0:  # also NaN
        return np.float32(0)
    return min(x, top)


@_kernel
def rgb_to_yuv(rgb, yo, uo, vo, luma, chroma, yoff, coff, top, sx, sy):  # noqa: ANN001, ANN201
    """Codes from (B, 3, H, W) float32 RGB: luma per pixel, (U, V) from the mean of each chroma block.

    luma (3,) and chroma (2, 3) are code values per unit of R, G, B (chroma's already divided
    by the block's area); yoff and coff are the offsets plus 0.5.
    """
    batch, _, height, width = rgb.shape
    fx, fy = 1 << sx, 1 << sy
    ceiling = np.float32(top)
    wr, wg, wb = luma[0], luma[1], luma[2]
    ru, gu, bu = chroma[0, 0], chroma[0, 1], chroma[0, 2]
    rv, gv, bv = chroma[1, 0], chroma[1, 1], chroma[1, 2]
    sr = np.empty(width, np.float32)
    sg = np.empty(width, np.float32)
    sb = np.empty(width, np.float32)
    for b in range(batch):
        for i in range(height):
            r, g, bl, yr = rgb[b, 0, i], rgb[b, 1, i], rgb[b, 2, i], yo[b, i]
            for j in range(width):
                yr[j] = _code(wr * r[j] + wg * g[j] + wb * bl[j] + yoff, ceiling)
            first = i & (fy - 1) == 0
            if first:
                for j in range(width):  # an explicit loop: numba's slice assignment is 3x slower here
                    sr[j] = r[j]
                    sg[j] = g[j]
                    sb[j] = bl[j]
            # The last row of a partial bottom block also stands in for the rows missing below it.
            missing = fy - 1 - (i & (fy - 1)) if i == height - 1 else 0
            for _ in range(missing + (0 if first else 1)):
                for j in range(width):
                    sr[j] += r[j]
                    sg[j] += g[j]
                    sb[j] += bl[j]
            if i & (fy - 1) != fy - 1 and i != height - 1:
                continue
            urow, vrow = uo[b, i >> sy], vo[b, i >> sy]
            # 4:4:4, and 4:2:0/4:2:2 of even width (the usual cases): loops without `min` vectorise.
            if sx == 0:
                for c in range(width):
                    urow[c] = _code(ru * sr[c] + gu * sg[c] + bu * sb[c] + coff, ceiling)
                    vrow[c] = _code(rv * sr[c] + gv * sg[c] + bv * sb[c] + coff, ceiling)
                continue
            if sx == 1 and urow.shape[0] << 1 == width:
                for c in range(urow.shape[0]):
                    tr = sr[2 * c] + sr[2 * c + 1]
                    tg = sg[2 * c] + sg[2 * c + 1]
                    tb = sb[2 * c] + sb[2 * c + 1]
                    urow[c] = _code(ru * tr + gu * tg + bu * tb + coff, ceiling)
                    vrow[c] = _code(rv * tr + gv * tg + bv * tb + coff, ceiling)
                continue
            for c in range(urow.shape[0]):
                tr = tg = tb = np.float32(0)
                for k in range(fx):
                    # A partial block at the right edge repeats its last column.
                    j = min((c << sx) + k, width - 1)
                    tr += sr[j]
                    tg += sg[j]
                    tb += sb[j]
                urow[c] = _code(ru * tr + gu * tg + bu * tb + coff, ceiling)
                vrow[c] = _code(rv * tr + gv * tg + bv * tb + coff, ceiling)
