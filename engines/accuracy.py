"""The reduced-precision guard: an engine must agree with FP32 on a frame of the job."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from derain.engines.base import Engine, EngineError
from derain.engines.eager import EagerEngine
from derain.models.brn import BRN
from derain.models.metrics import psnr

MIN_PSNR_DB = 45.0


def psnr_vs_fp32(engine: Engine, model: BRN, frame: Tensor, batch: int = 1) -> float:
    """PSNR in dB (peak 1) of the engine's output against the FP32 model on the same device.

    The engine sees the frame repeated to `batch`, the job's batch size, so that an engine
    built per shape (compile, tensorrt) builds the shape the job will use, and only that one.
    """
    frame = frame[:1].to(engine.device)
    reference = EagerEngine(model, engine.device, "fp32").run(frame).float()
    output = engine.run(frame.expand(batch, -1, -1, -1).contiguous())[:1].float()
    return psnr(output, reference)


def check_accuracy(
    engine: Engine, model: BRN, frame: Tensor, allow_lossy: bool = False, warn: Callable[[str], None] = print, batch: int = 1
) -> float | None:
    """None for FP32 engines; else the PSNR, raising EngineError under 45 dB unless allowed."""
    if engine.precision == "fp32":
        return None
    db = psnr_vs_fp32(engine, model, frame, batch)
    if db < MIN_PSNR_DB:
        message = (
            f"--precision {engine.precision} on the {engine.backend} engine differs from fp32 by "
            f"{db:.1f} dB PSNR on this input (minimum {MIN_PSNR_DB:.0f} dB)"
        )
        if not allow_lossy:
            raise EngineError(message + "; use --precision fp32, or --allow-lossy to accept it")
        warn(f"warning: {message}; going on because of --allow-lossy")
    return db
