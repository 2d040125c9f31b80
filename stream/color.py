"""YUV <-> RGB for the model, in float on the engine's device, with the input's own matrix and range.

A naive path (8-bit RGB from the decoder's default swscale, truncation back to uint8, default
swscale to 4:2:0) throws away a large part of BRN's gain. Here:

- frames stay in their coded planar format (any bit depth) until they are on the device;
- the matrix (BT.601/709/2020, ...) and range (limited/full) are the input's own tags, and
  the output is converted back with the same ones, so a frame the engine leaves alone comes
  back with the same code values;
- chroma is upsampled by replication and downsampled by the mean of the same block: the two
  are exact inverses, so chroma the model does not touch survives bit-exact (bilinear up and
  mean down would blur it on every pass);
- the float result is rounded to nearest, never truncated.

On the CPU, planar YUV goes through one-pass numba kernels (yuv_kernels.py): the maths of
the torch ops, with the float frame written once on the way in and read once on the way out
(a 720p frame's round trip takes 1.8 ms of one core instead of 5.9 with the torch ops;
benchmarks/RESULTS.md). Elsewhere the torch ops run on the engine's device. The two agree to
float rounding: a value within a hair of a rounding tie may land one code apart.

Where the input has no matrix tag, HD and larger is taken as BT.709 and smaller as BT.601,
as players do.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from derain.stream.pixels import ColorError, ColorSpec


def _as_float(plane: Tensor, bits: int) -> Tensor:
    if plane.dtype == torch.int16 and bits == 16:
        # 16-bit codes travel as int16 (torch has little uint16 support): undo the wrap.
        return (plane.to(torch.int32) & 0xFFFF).float()
    return plane.float()


def _spread(luma: Tensor, scale: float, chroma: Tensor, shift: tuple[int, int]) -> Tensor:
    """luma (B, 1, H, W) x scale + chroma (B, 3, h, w) replicated over the luma grid, in one pass."""
    batch, _, height, width = luma.shape
    fx, fy = 1 << shift[0], 1 << shift[1]
    hc, wc = chroma.shape[-2:]
    if (hc * fy, wc * fx) != (height, width):
        # Odd sizes: the last chroma row/column covers a partial block.
        pad = (0, wc * fx - width, 0, hc * fy - height)
        return _spread(F.pad(luma, pad, mode="replicate"), scale, chroma, shift)[..., :height, :width]
    # Expanding along W and broadcasting along H is much faster on the CPU than a 6-D broadcast.
    rows = chroma.unsqueeze(-1).expand(batch, 3, hc, wc, fx).reshape(batch, 3, hc, 1, width)
    return torch.add(rows, luma.view(batch, 1, hc, fy, width), alpha=scale).view(batch, 3, height, width)


@functools.lru_cache(maxsize=32)
def _codes_to_rgb(spec: ColorSpec, device: torch.device) -> tuple[Tensor, Tensor]:
    """Matrix (3, 2) and bias (3,) taking (U, V) code values to chroma's share of R, G and B.

    The bias also carries the luma offset, so luma needs one scaled add and no pass of its own.
    """
    yoff, yspan, coff, cspan = spec._scale()
    kr, kb = spec.kr, spec.kb
    kg = 1.0 - kr - kb
    matrix = torch.tensor(
        [[0.0, 2 * (1 - kr)], [-2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg], [2 * (1 - kb), 0.0]], dtype=torch.float64
    ) / cspan
    bias = -(matrix @ torch.tensor([coff, coff], dtype=torch.float64)) - yoff / yspan
    return matrix.float().to(device), bias.float().to(device)


def to_rgb(planes: list[Tensor], spec: ColorSpec) -> Tensor:
    """(B, 3, H, W) float32 RGB in [0, 1] (out-of-gamut values unclipped) from (B, h, w) code planes."""
    batch, height, width = planes[0].shape
    shapes = [(batch, *shape) for shape in spec.layout.plane_shapes(width, height)]
    if [tuple(p.shape) for p in planes] != shapes:
        # The CPU kernels index without bounds checks: planes that do not fit would read past them.
        raise ColorError(f"planes of shapes {[tuple(p.shape) for p in planes]} do not make a {spec.layout.format} picture; expected {shapes}")
    if spec.layout.family == "yuv" and planes[0].device.type == "cpu":
        return _cpu_to_rgb(planes, spec)
    return _torch_to_rgb(planes, spec)


def host_codes(plane: Tensor) -> np.ndarray:
    """A CPU code plane as NumPy: uint8, or uint16 for the int16 tensors deep formats travel in (no copy)."""
    array = plane.numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


def _cpu_to_rgb(planes: list[Tensor], spec: ColorSpec) -> Tensor:
    # Imported here: numba takes a third of a second to import, which commands that convert
    # nothing on the CPU (--help, a GPU job) need not pay.
    from derain.stream import yuv_kernels

    matrix_uv, bias = _codes_to_rgb(spec, torch.device("cpu"))
    (_, mrv), (mgu, mgv), (mbu, _) = matrix_uv.tolist()
    y, u, v = (np.ascontiguousarray(host_codes(p.detach())) for p in planes)
    out = torch.empty(y.shape[0], 3, *y.shape[1:], dtype=torch.float32)
    sx, sy = spec.layout.chroma_shift
    matrix = np.array([mrv, mgu, mgv, mbu], np.float32)
    yuv_kernels.yuv_to_rgb(y, u, v, out.numpy(), np.float32(1.0 / spec._scale()[1]), matrix, bias.numpy(), sx, sy)
    return out


def _torch_to_rgb(planes: list[Tensor], spec: ColorSpec) -> Tensor:
    layout = spec.layout
    yoff, yspan, _, _ = spec._scale()
    if layout.family == "gray":
        y = _as_float(planes[0], layout.bits).mul_(1.0 / yspan).sub_(yoff / yspan)
        return y.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    if layout.family == "gbr":
        g, b, r = (_as_float(p, layout.bits) for p in planes)
        return torch.stack((r, g, b), 1).div_(yspan)
    matrix, bias = _codes_to_rgb(spec, planes[0].device)
    # Chroma's share of R, G and B at chroma resolution, spread over the luma grid when luma is added.
    uv = _as_float(torch.stack(planes[1:], 1), layout.bits)
    chroma = torch.einsum("kc,bchw->bkhw", matrix, uv).add_(bias.view(1, 3, 1, 1))
    return _spread(_as_float(planes[0], layout.bits).unsqueeze(1), 1.0 / yspan, chroma, layout.chroma_shift)


@functools.lru_cache(maxsize=32)
def _rgb_to_codes(spec: ColorSpec, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Luma weights (3,), chroma block weights (2, 3, fy, fx) and chroma bias (2,) for `spec`.

    Made once per spec and device: a small tensor built from host values inside a batch is a
    blocking host-to-device copy that would stall the CUDA pipeline on every frame.
    """
    coff = spec._scale()[2]
    sx, sy = spec.layout.chroma_shift
    fy, fx = 1 << sy, 1 << sx
    luma_row, chroma_rows = _rgb_weights(spec)
    luma = torch.tensor(luma_row)
    # The mean over each chroma block and the matrix in one strided convolution.
    weight = (torch.tensor(chroma_rows) / (fy * fx)).view(2, 3, 1, 1).expand(2, 3, fy, fx).contiguous()
    bias = torch.tensor([coff + 0.5, coff + 0.5])
    return luma.to(device), weight.to(device), bias.to(device)


def _rgb_weights(spec: ColorSpec) -> tuple[list[float], list[list[float]]]:
    """Code values per unit of R, G and B: the luma row and the (U, V) rows, offsets left out."""
    _, yspan, _, cspan = spec._scale()
    kr, kb = spec.kr, spec.kb
    kg = 1.0 - kr - kb
    uv = [[-kr / (1 - kb) / 2, -kg / (1 - kb) / 2, 0.5], [0.5, -kg / (1 - kr) / 2, -kb / (1 - kr) / 2]]
    return [kr * yspan, kg * yspan, kb * yspan], [[w * cspan for w in row] for row in uv]


def from_rgb(rgb: Tensor, spec: ColorSpec) -> list[Tensor]:
    """Code planes (uint8, or int16 holding up to 16 bits) for `spec` from (B, 3, H, W) RGB in [0, 1]."""
    if spec.layout.family == "yuv" and rgb.device.type == "cpu":
        return _cpu_from_rgb(rgb, spec)
    return _torch_from_rgb(rgb, spec)


def _cpu_from_rgb(rgb: Tensor, spec: ColorSpec) -> list[Tensor]:
    from derain.stream import yuv_kernels

    layout = spec.layout
    yoff, _, coff, _ = spec._scale()
    luma_row, chroma_rows = _rgb_weights(spec)
    sx, sy = layout.chroma_shift
    x = rgb.detach().float().contiguous().numpy()
    batch, _, height, width = x.shape
    deep = layout.bits > 8
    codes = [np.empty((batch, *shape), np.uint16 if deep else np.uint8) for shape in layout.plane_shapes(width, height)]
    chroma = np.array(chroma_rows, np.float32) / (1 << (sx + sy))
    yuv_kernels.rgb_to_yuv(x, *codes, np.array(luma_row, np.float32), chroma, np.float32(yoff + 0.5), np.float32(coff + 0.5),
                           spec.max_code, sx, sy)
    return [torch.from_numpy(c.view(np.int16) if deep else c) for c in codes]


def _torch_from_rgb(rgb: Tensor, spec: ColorSpec) -> list[Tensor]:
    layout = spec.layout
    rgb = rgb.float()
    yoff = spec._scale()[0]
    top = spec.max_code
    # +0.5 then truncation after clamping to [0, top] rounds to nearest.
    if layout.family == "gbr":
        codes = [rgb[:, c] * top + 0.5 for c in (1, 2, 0)]
    else:
        luma, weight, bias = _rgb_to_codes(spec, rgb.device)
        codes = [torch.einsum("bchw,c->bhw", rgb, luma).add_(yoff + 0.5)]
        if layout.family == "yuv":
            fy, fx = weight.shape[-2:]
            height, width = rgb.shape[-2:]
            if height % fy or width % fx:
                rgb = F.pad(rgb, (0, -width % fx, 0, -height % fy), mode="replicate")
            chroma = F.conv2d(rgb, weight, bias, stride=(fy, fx))
            codes += [chroma[:, 0], chroma[:, 1]]
    dtype = torch.uint8 if layout.bits <= 8 else torch.int16
    # int16 cannot hold 65535: go through int32 and let the cast wrap, which the host's
    # uint16 view of the same bytes undoes.
    via = torch.int32 if dtype == torch.int16 else dtype
    return [c.clamp_(0, top).to(via).to(dtype) for c in codes]
