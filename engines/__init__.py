"""Engines: a BRN made runnable for a device and precision, behind one interface.

Backends, best first: tensorrt (torch-tensorrt, FP16 engines cached on disk), compile
(torch.compile with CUDA graphs), eager (plain PyTorch, any device); onnx (ONNX Runtime) on
request. `auto` takes the best one available and says why it passed over the better ones.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch

from derain.engines.accuracy import check_accuracy, psnr_vs_fp32
from derain.engines.base import (
    PRECISIONS,
    Engine,
    EngineError,
    select_device,
    select_precision,
)
from derain.engines.cache import EngineCache
from derain.engines.compiled import CompileEngine
from derain.engines.eager import EagerEngine
from derain.engines.onnx import OnnxEngine, export_onnx
from derain.engines.tensorrt import TensorRTEngine
from derain.engines.tiling import TiledEngine
from derain.models.brn import BRN

BACKENDS = ("auto", "tensorrt", "compile", "eager", "onnx")

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Engine",
    "EngineCache",
    "EngineError",
    "TiledEngine",
    "build_engine",
    "check_accuracy",
    "choose_backend",
    "export_onnx",
    "psnr_vs_fp32",
    "select_device",
    "select_precision",
]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def choose_backend(device: torch.device, has: Callable[[str], bool] = installed) -> tuple[str, list[str]]:
    """The best backend for `device` given what is installed, and why each better one was passed."""
    if device.type != "cuda":
        return "eager", ["tensorrt and compile need a CUDA GPU"]
    passed: list[str] = []
    if has("torch_tensorrt"):
        return "tensorrt", passed
    passed.append("tensorrt: torch-tensorrt is not installed (pip install 'derain[tensorrt]')")
    if has("triton"):
        return "compile", passed
    passed.append("compile: Triton is not installed, torch.compile cannot generate GPU kernels")
    return "eager", passed


def build_engine(
    model: BRN,
    backend: str = "auto",
    device: str | torch.device | None = None,
    precision: str | None = None,
    tile: int | None = None,
    notes: list[str] | None = None,
) -> Engine:
    """The engine for `model` on `device`. With `auto`, why better backends were passed over is
    appended to `notes`. With `tile`, frames larger than it run as overlapping tiles."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    prec = select_precision(precision, dev)
    if backend == "auto":
        backend, passed = choose_backend(dev)
        if notes is not None:
            notes.extend(passed)
    engines = {"tensorrt": TensorRTEngine, "compile": CompileEngine, "eager": EagerEngine, "onnx": OnnxEngine}
    if backend not in engines:
        raise EngineError(f"--engine {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "onnx" and precision in (None, "auto"):
        prec = "fp32"
    engine: Engine = engines[backend](model, dev, prec)
    return TiledEngine(engine, tile) if tile else engine
