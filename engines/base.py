"""The one interface every backend implements, and the choice of device and precision."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor

from derain.models.errors import EngineError

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Engine(Protocol):
    """A model made runnable for one device and precision.

    `run(batch)` takes a float batch (B, 3, H, W) in [0, 1] on `device` and returns the derained
    batch, clamped to [0, 1], on the same device in `dtype`.
    """

    backend: str
    precision: str
    device: torch.device
    dtype: torch.dtype
    build_seconds: float

    def run(self, batch: Tensor) -> Tensor: ...


def select_device(name: str | None = None) -> torch.device:
    """`name` as given ('cpu', 'cuda', 'cuda:1'), or CUDA when there is one, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"--device {name}: this machine has no CUDA GPU that PyTorch can use; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise EngineError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def select_precision(name: str | None, device: torch.device) -> str:
    """`name` as given, or FP16 on a GPU and FP32 on the CPU (half is slow and inexact there)."""
    if name in (None, "auto"):
        return "fp16" if device.type == "cuda" else "fp32"
    if name not in PRECISIONS:
        raise EngineError(f"--precision {name!r}: use one of {', '.join(PRECISIONS)}")
    return name


def configure_cudnn(precision: str) -> None:
    """cuDNN settings for a video job's convolutions (process-wide, as cuDNN's flags are).

    Every frame of a job has one shape, so timing cuDNN's algorithms once per shape
    (`benchmark`) pays for itself within a few frames. And "fp32" means FP32: PyTorch lets
    cuDNN run FP32 convolutions in TF32 (a 10-bit mantissa) by default.
    """
    torch.backends.cudnn.benchmark = True
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False


def built_shape_for(shape: tuple[int, ...], built: Iterable[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The already-built shape that runs a batch of `shape`: the shape itself, or a larger batch
    of the same frame size (a short last batch runs padded rather than building anew); None
    when neither exists."""
    built = list(built)
    if shape in built:
        return shape
    return next((s for s in built if s[1:] == shape[1:] and s[0] > shape[0]), None)


def pad_batch(batch: Tensor, size: int) -> Tensor:
    """`batch` with zero frames appended up to `size` frames."""
    if batch.shape[0] == size:
        return batch
    return torch.cat((batch, batch.new_zeros((size - batch.shape[0], *batch.shape[1:]))))
