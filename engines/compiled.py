"""torch.compile: Inductor kernels and CUDA graphs for the fixed shapes of a video."""

from __future__ import annotations

import copy
import time

import torch
from derain.engines.base import PRECISIONS, EngineError
from derain.models.brn import BRN, Derainer
from torch import Tensor

# reduce-overhead: CUDA graphs without the minutes of autotuning that max-autotune spends on
# every convolution shape; `derain bench` measures both.
DEFAULT_MODE = "reduce-overhead"


class CompileEngine:
    backend = "compile"

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp16", mode: str = DEFAULT_MODE) -> None:
        if device.type != "cuda":
            raise EngineError("--engine compile needs a CUDA GPU here; use --engine eager on the CPU")
        start = time.perf_counter()
        self.device, self.precision, self.dtype = device, precision, PRECISIONS[precision]
        module = Derainer(copy.deepcopy(model)).eval().to(device=device, dtype=self.dtype)
        module = module.to(memory_format=torch.channels_last)
        self._shapes: set[tuple[int, ...]] = set()
        self.module = torch.compile(module, mode=mode, dynamic=False, fullgraph=True)
        self.build_seconds = time.perf_counter() - start

    @torch.inference_mode()
    def run(self, batch: Tensor) -> Tensor:
        batch = batch.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        first = tuple(batch.shape) not in self._shapes
        start = time.perf_counter()
        torch.compiler.cudagraph_mark_step_begin()
        # A CUDA graph reuses its output buffer on the next replay: the caller gets its own copy.
        out = self.module(batch).clone()
        if first:
            # The first call of a shape compiles it: build time, not throughput.
            torch.cuda.synchronize(self.device)
            self._shapes.add(tuple(batch.shape))
            self.build_seconds += time.perf_counter() - start
        return out
