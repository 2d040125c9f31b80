"""Engines: a BRN made runnable for a device and precision, behind one interface.

Backends: tensorrt (torch-tensorrt, FP16 engines cached on disk), compile (torch.compile: CUDA
graphs on a GPU, Inductor's C++ kernels on the CPU), eager (plain PyTorch, any device), onnx
(ONNX Runtime), openvino (OpenVINO, CPU). `auto` on a GPU takes the best one that imports and
runs there (tensorrt, then compile, then eager) and says why it passed over the better ones; on
the CPU in FP32 it measures eager, onnx and openvino for each input shape and runs the fastest
that agrees with eager (`derain.engines.auto`, the choice remembered on disk).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from derain.engines.accuracy import MIN_PSNR_DB, AccuracyGuard, LossyEngineWarning, check_accuracy, psnr_vs_fp32
from derain.engines.auto import AutoEngine, Choice, ProbeFile
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
from derain.engines.openvino import OpenVinoEngine
from derain.engines.tensorrt import TensorRTEngine
from derain.engines.tiling import TiledEngine
from derain.models.brn import BRN

BACKENDS = ("auto", "tensorrt", "compile", "eager", "onnx", "openvino")

__all__ = [
    "BACKENDS",
    "MIN_PSNR_DB",
    "PRECISIONS",
    "AccuracyGuard",
    "AutoEngine",
    "Choice",
    "Engine",
    "EngineCache",
    "EngineError",
    "LossyEngineWarning",
    "ProbeFile",
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

    On the CPU this is the choice below FP32 (eager); in FP32 `build_engine` measures instead (AutoEngine).

    Args:
        device: where the engine will run.
        why_not: None for a module that imports, else the reason it does not (`import_problem`).
    """
    if device.type != "cuda":
        return "eager", ["tensorrt needs a CUDA GPU", "compile runs on the CPU only when asked (engine='compile'): Inductor builds each frame size for tens of seconds",
                         "onnx and openvino: auto measures them in fp32 only (engine='openvino', precision='bf16' forces OpenVINO's BF16)"]
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
        engine: a backend of BACKENDS; "auto" takes the best that works here (on the CPU in
            FP32: the fastest measured for each input shape, see `AutoEngine`).
        device: "cpu", "cuda", "cuda:N" or a torch.device; "auto" (or None): CUDA when present.
        precision: "fp32", "fp16" or "bf16"; "auto" (or None): fp16 on a GPU, fp32 on the CPU
            (fp32 for onnx and openvino).
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
    backends: dict[str, Callable[[BRN, torch.device, str], Engine]] = {
        "tensorrt": TensorRTEngine, "compile": CompileEngine, "eager": EagerEngine, "onnx": OnnxEngine, "openvino": OpenVinoEngine,
        "auto": lambda m, d, p: AutoEngine(m, d),
    }
    if engine == "auto" and not (dev.type == "cpu" and prec == "fp32"):
        engine, passed = choose_backend(dev)
        if notes is not None:
            notes.extend(passed)
    if engine not in backends:
        raise EngineError(f"engine={engine!r}: use one of {', '.join(BACKENDS)}")
    if engine in ("onnx", "openvino") and precision in (None, "auto"):
        prec = "fp32"
    built = backends[engine](model, dev, prec)
    if prec != "fp32":
        built.guard = AccuracyGuard(model, allow_lossy)
    return TiledEngine(built, tile) if tile else built
