"""Plain PyTorch: any device, any precision. The reference every other backend is checked against.

Channels-last on a GPU, and for FP32 on the CPU: oneDNN's convolutions then work in the layout
they prefer instead of reordering every feature map (about a fifth less CPU time a frame at
160x120 to 640x360, same outputs to 1e-7; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor

from derain.engines.base import PRECISIONS, Engine
from derain.models.brn import BRN, Derainer


class EagerEngine(Engine):
    """Plain PyTorch on any device, in any precision."""

    backend = "eager"

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp32") -> None:
        start = time.perf_counter()
        self.device = device
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        module = Derainer(copy.deepcopy(model)).eval().to(device=device, dtype=self.dtype)
        self.channels_last = device.type == "cuda" or precision == "fp32"
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.build_seconds = time.perf_counter() - start

    @torch.inference_mode()
    def _run(self, batch: Tensor) -> Tensor:
        batch = batch.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.module(batch)
