"""How far a measurement is from what the hardware allows: FLOPs and bytes per frame, device peaks.

The cost of a frame comes from the convolutions that actually run: the model is run once on the
meta device (shapes only, no arithmetic, so a 4K frame costs nothing) with a hook on every
Conv2d. A multiply-add counts two FLOPs. The memory floor assumes every convolution is its own
pass over memory, reading its input feature map and writing its output once at the engine's
precision; weights (under a megabyte) and the element-wise LSTM arithmetic are left out, so the
floor is a lower bound a fusing compiler can only approach from above.

Device peaks are measured here, not taken from a data sheet: a large device-to-device copy
for bandwidth and a large matrix product (FP16 on a GPU, FP32 on the CPU) for compute.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from derain.engines import PRECISIONS
from derain.models.brn import BRN, Derainer


@dataclass(frozen=True)
class FrameCost:
    """One frame through the model: conv FLOPs and feature-map elements read and written by convs."""

    flops: int
    feature_map_elements: int
    conv_calls: int

    def min_bytes(self, precision: str) -> int:
        return self.feature_map_elements * PRECISIONS[precision].itemsize


def frame_cost(model: BRN, height: int, width: int) -> FrameCost:
    """The cost of one (height x width) frame, counted from the convolutions the forward pass calls."""
    meta = Derainer(copy.deepcopy(model)).to("meta").eval()
    flops = elements = calls = 0

    def count(conv: nn.Conv2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal flops, elements, calls
        kh, kw = conv.kernel_size
        flops += 2 * output.numel() * (conv.in_channels // conv.groups) * kh * kw
        elements += inputs[0].numel() + output.numel()
        calls += 1

    for module in meta.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        meta(torch.empty(1, 3, height, width, device="meta"))
    return FrameCost(flops, elements, calls)


@dataclass(frozen=True)
class Peaks:
    """Measured device peaks: FLOP/s of a matrix product and bytes/s of a copy (read + write)."""

    compute_flops_per_s: float
    compute_dtype: str
    matmul_size: int
    bandwidth_bytes_per_s: float
    copy_bytes: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def measure_peaks(device: torch.device) -> Peaks:
    """Best of several repetitions of each probe: a peak is what the device can do, not its average."""
    gpu = device.type == "cuda"
    n = 8192 if gpu else 1024
    copy_bytes = 2**30 if gpu else 2**26
    repeats = 20 if gpu else 5
    peaks = Peaks(
        compute_flops_per_s=2 * n**3 / _matmul_seconds(device, n, torch.float16 if gpu else torch.float32, repeats),
        compute_dtype="fp16" if gpu else "fp32",
        matmul_size=n,
        bandwidth_bytes_per_s=2 * copy_bytes / _copy_seconds(device, copy_bytes, repeats),
        copy_bytes=copy_bytes,
    )
    if gpu:
        torch.cuda.empty_cache()
    return peaks


def _matmul_seconds(device: torch.device, n: int, dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return _best_seconds(lambda: torch.mm(a, b), device, repeats)


def _copy_seconds(device: torch.device, nbytes: int, repeats: int) -> float:
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return _best_seconds(lambda: dst.copy_(src), device, repeats)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # first call: library handles, kernels, page faults
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)
    marks = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    torch.cuda.synchronize(device)
    for begin, end in marks:
        begin.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return min(begin.elapsed_time(end) for begin, end in marks) / 1e3


@dataclass(frozen=True)
class Floors:
    compute_floor_ms: float
    memory_floor_ms: float
    compute_floor_share: float
    memory_floor_share: float


def floors(cost: FrameCost, precision: str, fps: float, peaks: Peaks) -> Floors:
    """Per-frame floors at the measured peaks, and the share of each that `fps` reaches (1 = at the floor)."""
    compute_s = cost.flops / peaks.compute_flops_per_s
    memory_s = cost.min_bytes(precision) / peaks.bandwidth_bytes_per_s
    return Floors(compute_s * 1e3, memory_s * 1e3, compute_s * fps, memory_s * fps)
