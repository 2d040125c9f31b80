"""torch.compile: Inductor kernels for the fixed shapes of a video; CUDA graphs on a GPU."""

from __future__ import annotations

import copy
import time
import types
from collections.abc import Callable

import torch
from torch import Tensor, nn

from derain.engines.base import PRECISIONS, Engine, EngineError, built_shape_for, pad_batch
from derain.models.brn import BRN, Derainer

# reduce-overhead: CUDA graphs without the minutes of autotuning that max-autotune spends on
# every convolution shape; `derain bench` measures both. CUDA graphs do not exist on the CPU.
DEFAULT_MODE = "reduce-overhead"
CPU_MODE = "default"
CPU_PRECISIONS = ("fp32", "bf16")


def _forward(module: nn.Module, batch: Tensor) -> Tensor:
    return module(batch)


def _fresh_forward() -> Callable[[nn.Module, Tensor], Tensor]:
    """`_forward` with a code object of its own, to compile for one shape.

    Dynamo keeps its compiled graphs on the code object they were traced from and allows each
    eight of them (its recompile limit; with fullgraph=True the ninth raises). Compiling
    `Derainer.forward` itself would share those eight among every engine and shape in the
    process; a copy of the code per shape holds one graph, and no process-wide setting changes.
    """
    return types.FunctionType(_forward.__code__.replace(), _forward.__globals__, _forward.__name__)


class CompileEngine(Engine):
    """torch.compile, one compiled graph per batch shape: with CUDA graphs on a GPU, Inductor's
    C++ kernels on the CPU (fp32 or bf16)."""

    backend = "compile"
    per_shape = True

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp16", mode: str | None = None) -> None:
        if device.type not in ("cuda", "cpu"):
            raise EngineError(f"engine='compile' runs on cuda or cpu, not {device.type}; use engine='eager'")
        if device.type == "cpu" and precision not in CPU_PRECISIONS:
            raise EngineError(f"engine='compile' on the CPU runs {' or '.join(CPU_PRECISIONS)}, not {precision}: use precision='fp32'")
        start = time.perf_counter()
        self.device, self.precision, self.dtype = device, precision, PRECISIONS[precision]
        self.mode = mode or (DEFAULT_MODE if device.type == "cuda" else CPU_MODE)
        module = Derainer(copy.deepcopy(model)).eval().to(device=device, dtype=self.dtype)
        self.module = module.to(memory_format=torch.channels_last)
        self._compiled: dict[tuple[int, ...], Callable[[nn.Module, Tensor], Tensor]] = {}
        self.build_seconds = time.perf_counter() - start

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    @torch.inference_mode()
    def _run(self, batch: Tensor) -> Tensor:
        shape = tuple(batch.shape)
        batch = batch.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        # A short last batch runs padded on the graph of a full one: a new shape would compile
        # (and on a GPU record) again in the middle of the job.
        full = built_shape_for(shape, self._compiled)
        if full is None:
            full = self._prepare(batch)
        elif full != shape:
            batch = pad_batch(batch, full[0]).contiguous(memory_format=torch.channels_last)
        if not self._cuda:
            return self._compiled[full](self.module, batch)[: shape[0]]
        torch.compiler.cudagraph_mark_step_begin()
        # A CUDA graph reuses its output buffer on the next replay: the caller gets its own copy.
        return self._compiled[full](self.module, batch)[: shape[0]].clone()

    def _prepare(self, batch: Tensor) -> tuple[int, ...]:
        """Compile a new shape, counted as build time, and return it. On a GPU also record its
        CUDA graph: cudagraph trees warm up on a shape's first call and record on its second, so
        that every later call is a replay."""
        start = time.perf_counter()
        shape = tuple(batch.shape)
        compiled = torch.compile(_fresh_forward(), mode=self.mode, dynamic=False, fullgraph=True)
        for _ in range(2 if self._cuda else 1):
            if self._cuda:
                torch.compiler.cudagraph_mark_step_begin()
            compiled(self.module, batch)
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self._compiled[shape] = compiled
        self.build_seconds += time.perf_counter() - start
        return shape
