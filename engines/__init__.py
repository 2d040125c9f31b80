"""Engines: a BRN made runnable for a device and precision, behind one interface.

Backends, best first: tensorrt (torch-tensorrt, FP16 engines cached on disk), compile
(torch.compile: CUDA graphs on a GPU, Inductor's C++ kernels on the CPU), eager (plain PyTorch,
any device); onnx (ONNX Runtime) on request. `auto` takes the best one that imports and runs here, and says why it passed over
the better ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from derain.engines.accuracy import MIN_PSNR_DB, AccuracyGuard, LossyEngineWarning, check_accuracy, psnr_vs_fp32
from derain.engines.base import (
    PRECISIONS,
    Engine,
    EngineError,
    import_problem,
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
    "MIN_PSNR_DB",
    "PRECISIONS",
    "AccuracyGuard",
    "Engine",
    "EngineCache",
    "EngineError",
    "LossyEngineWarning",
    "TiledEngine",
    "build_engine",
    "check_accuracy",
    "choose_backend",
    "export_onnx",
    "import_problem",
    "psnr_vs_fp32",
    "select_device",
    "select_precision",
]


def installed(module: str) -> bool:
    """Whether `module` imports (a real import: one built for another torch release does not)."""
    return import_problem(module) is None


def choose_backend(device: torch.device, why_not: Callable[[str], str | None] = import_problem) -> tuple[str, list[str]]:
    """The best backend for `device` given what imports here, and why each better one was passed over.

    Args:
        device: where the engine will run.
        why_not: None for a module that imports, else the reason it does not (`import_problem`).
    """
    if device.type != "cuda":
        return "eager", ["tensorrt needs a CUDA GPU", "compile runs on the CPU only when asked (engine='compile'): Inductor builds each frame size for tens of seconds"]
    passed: list[str] = []
    problem = why_not("torch_tensorrt")
    if problem is None:
        return "tensorrt", passed
    passed.append(f"tensorrt: torch-tensorrt is {problem} (pip install 'derain[tensorrt]')")
    problem = why_not("triton")
    if problem is None:
        return "compile", passed
    passed.append(f"compile: Triton is {problem}, torch.compile cannot generate GPU kernels")
    return "eager", passed


def build_engine(
    model: BRN,
    engine: str = "auto",
    device: str | torch.device | None = "auto",
    precision: str | None = "auto",
    tile: int | None = None,
    allow_lossy: bool = False,
    notes: list[str] | None = None,
) -> Engine:
    """The engine for `model`: a backend on a device in a precision.

    Args:
        model: the FP32 model (left unchanged; engines work on copies).
        engine: a backend of BACKENDS; "auto" takes the best that works here.
        device: "cpu", "cuda", "cuda:N" or a torch.device; "auto" (or None): CUDA when present.
        precision: "fp32", "fp16" or "bf16"; "auto" (or None): fp16 on a GPU, fp32 on the CPU
            (fp32 for onnx).
        tile: run frames larger than this many pixels a side as overlapping tiles.
        allow_lossy: let a reduced-precision engine run (with a LossyEngineWarning) when its
            first batch differs from FP32 by more than the 45 dB guard allows.
        notes: with "auto", why better backends were passed over is appended here.

    Returns:
        The engine. Below FP32 it carries an accuracy guard that judges its first batch (or the
        sample given to `Engine.check`).

    Raises:
        EngineError: an unknown backend, device or precision, or one that cannot run here.
    """
    dev = device if isinstance(device, torch.device) else select_device(device)
    prec = select_precision(precision, dev)
    if engine == "auto":
        engine, passed = choose_backend(dev)
        if notes is not None:
            notes.extend(passed)
    backends: dict[str, Callable[[BRN, torch.device, str], Engine]] = {"tensorrt": TensorRTEngine, "compile": CompileEngine, "eager": EagerEngine, "onnx": OnnxEngine}
    if engine not in backends:
        raise EngineError(f"engine={engine!r}: use one of {', '.join(BACKENDS)}")
    if engine == "onnx" and precision in (None, "auto"):
        prec = "fp32"
    built = backends[engine](model, dev, prec)
    if prec != "fp32":
        built.guard = AccuracyGuard(model, allow_lossy)
    return TiledEngine(built, tile) if tile else built
