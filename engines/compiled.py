"""torch.compile: Inductor kernels and CUDA graphs for the fixed shapes of a video."""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor

from derain.engines.base import PRECISIONS, Engine, EngineError, built_shape_for, pad_batch
from derain.models.brn import BRN, Derainer

# reduce-overhead: CUDA graphs without the minutes of autotuning that max-autotune spends on
# every convolution shape; `derain bench` measures both.
DEFAULT_MODE = "reduce-overhead"


class CompileEngine(Engine):
    """torch.compile with CUDA graphs, one graph per batch shape."""

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
    def _run(self, batch: Tensor) -> Tensor:
        shape = tuple(batch.shape)
        batch = batch.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        # A short last batch runs padded on the graph of a full one: a new shape would compile
        # and record again in the middle of the job.
        full = built_shape_for(shape, self._shapes)
        if full is None:
            self._prepare(batch)
        elif full != shape:
            batch = pad_batch(batch, full[0]).contiguous(memory_format=torch.channels_last)
        torch.compiler.cudagraph_mark_step_begin()
        # A CUDA graph reuses its output buffer on the next replay: the caller gets its own copy.
        return self.module(batch)[: shape[0]].clone()

    def _prepare(self, batch: Tensor) -> None:
        """Compile a new shape and record its CUDA graph, counted as build time: cudagraph trees
        warm up on a shape's first call and record on its second, so that every later call is
        a replay."""
        start = time.perf_counter()
        for _ in range(2):
            torch.compiler.cudagraph_mark_step_begin()
            self.module(batch)
        torch.cuda.synchronize(self.device)
        self._shapes.add(tuple(batch.shape))
        self.build_seconds += time.perf_counter() - start
