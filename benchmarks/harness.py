"""Timing: warm-up, then many timed calls over rotating inputs drawn from one shared frame pool.

Every measurement at a resolution (the baseline and each engine row) draws its inputs from the
same `FramePool`, and records the pool's checksum, so rows are comparable and a reader can check
that they were. On a GPU each call is bracketed by CUDA events, so latency is the time the GPU
spent on it and throughput is the span from the first call's start to the last call's end; on
the CPU, and for work that synchronises with the host anyway, a monotonic clock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class FramePool:
    """Deterministic frames (N, 3, H, W), float32 in [0, 1] on the CPU, and their checksum."""

    frames: Tensor
    checksum: str

    @classmethod
    def generate(cls, height: int, width: int, count: int, seed: int = 0) -> FramePool:
        generator = torch.Generator().manual_seed(seed)
        frames = torch.rand(count, 3, height, width, generator=generator)
        return cls(frames, frame_checksum(frames))

    @property
    def count(self) -> int:
        return self.frames.shape[0]

    def batches(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
        """Batches that walk the pool in order, wrapping around: batch k holds frames k*B .. k*B+B-1 (mod N).

        Built on the device in the engine's dtype before timing, so that the timed calls measure
        the engine and not the host-to-device copy (the baseline measures that copy on purpose).
        """
        calls = max(1, self.count // batch)
        order = torch.arange(calls * batch) % self.count
        return [self.frames[idx].to(device=device, dtype=dtype) for idx in order.view(calls, batch)]

    def host_frames(self) -> list[np.ndarray]:
        """The frames as a decoder hands them to a script: H x W x 3 float32 arrays."""
        return list(self.frames.permute(0, 2, 3, 1).contiguous().numpy())


def frame_checksum(frames: Tensor) -> str:
    """A short SHA-256 of float32 frames, to show that two measurements saw the same pixels."""
    data = frames.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class Timing:
    latencies_ms: list[float]
    total_seconds: float
    frames_per_call: int
    timer: str

    @property
    def fps(self) -> float:
        return self.frames_per_call * len(self.latencies_ms) / self.total_seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def measure(
    fn: Callable[[T], object],
    inputs: Sequence[T],
    warmup: int,
    iterations: int,
    frames_per_call: int,
    device: torch.device,
    host_synchronous: bool = False,
) -> Timing:
    """Call `fn` `warmup` times untimed, then `iterations` times timed, cycling through `inputs`.

    `host_synchronous` says that `fn` returns only when its work is done (it copies results to
    the host), so wall-clock time is the honest measure even on a GPU.
    """
    for k in range(warmup):
        fn(inputs[k % len(inputs)])
    if device.type == "cuda" and not host_synchronous:
        return _measure_events(fn, inputs, warmup, iterations, frames_per_call, device)
    latencies = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for k in range(warmup, warmup + iterations):
        t0 = time.perf_counter()
        fn(inputs[k % len(inputs)])
        latencies.append((time.perf_counter() - t0) * 1e3)
    return Timing(latencies, time.perf_counter() - start, frames_per_call, "perf_counter")


def _measure_events(
    fn: Callable[[T], object], inputs: Sequence[T], warmup: int, iterations: int, frames_per_call: int, device: torch.device
) -> Timing:
    with torch.cuda.device(device):
        torch.cuda.synchronize()
        marks = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iterations)]
        for k, (begin, end) in enumerate(marks):
            begin.record()
            fn(inputs[(warmup + k) % len(inputs)])
            end.record()
        torch.cuda.synchronize()
    latencies = [begin.elapsed_time(end) for begin, end in marks]
    total = marks[0][0].elapsed_time(marks[-1][1]) / 1e3
    return Timing(latencies, total, frames_per_call, "cuda-events")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory held by PyTorch's allocator since the last reset; None on the CPU.

    TensorRT's own workspace is allocated outside PyTorch and is not counted.
    """
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
