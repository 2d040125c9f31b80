"""The reduced-precision guard: an engine must agree with FP32 on a frame of the job.

`build_engine` gives every engine below FP32 an `AccuracyGuard`; the engine calls it on the
first batch it runs (or on the sample given to `Engine.check`), once. Under MIN_PSNR_DB the
engine refuses to run, or, with allow_lossy, runs and says so with a `LossyEngineWarning`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from torch import Tensor

from derain.engines.base import Engine
from derain.engines.eager import EagerEngine
from derain.models.brn import BRN
from derain.models.errors import EngineError
from derain.models.metrics import psnr

MIN_PSNR_DB = 45.0


class LossyEngineWarning(UserWarning):
    """A reduced-precision engine differs from FP32 beyond the guard, and runs because allow_lossy was set."""


def fp32_reference(model: BRN, frame: Tensor, engine: Engine) -> Tensor:
    """The FP32 model's output for `frame`, on the engine's device (no TF32)."""
    return EagerEngine(model, engine.device, "fp32").run(frame.to(engine.device)).float()


def psnr_vs_fp32(engine: Engine, model: BRN, frame: Tensor, batch: int = 1) -> float:
    """PSNR in dB (peak 1) of the engine's output against the FP32 model on the same device.

    The engine sees the frame repeated to `batch`, the job's batch size, so that an engine
    built per shape (compile, tensorrt) builds the shape the job will use, and only that one.
    The engine's own guard does not run.
    """
    frame = frame[:1].to(engine.device)
    output = engine.run_unchecked(frame.expand(batch, -1, -1, -1).contiguous())[:1].float()
    return psnr(output, fp32_reference(model, frame, engine))


class AccuracyGuard:
    """Compares an engine's output on one frame with FP32's, once, and refuses or warns.

    Args:
        model: the FP32 model the engine was built from (compared with as it is when the check runs).
        allow_lossy: under `min_db`, warn instead of refusing.
        min_db: the least PSNR (dB, peak 1) against FP32 that passes.
        warn: where a shortfall allowed by `allow_lossy` is reported; default
            `warnings.warn(..., LossyEngineWarning)`.
    """

    def __init__(
        self, model: BRN, allow_lossy: bool = False, min_db: float = MIN_PSNR_DB, warn: Callable[[str], None] | None = None
    ) -> None:
        self.allow_lossy, self.min_db, self.warn = allow_lossy, min_db, warn
        self.db: float | None = None
        self.done = False
        self._model: BRN | None = model
        self._refusal: str | None = None
        self._lock = threading.Lock()

    def judge(self, engine: Engine, frame: Tensor, output: Tensor) -> float | None:
        """Score `output` (the engine's, for `frame`) against FP32 the first time; later, the same verdict.

        Returns:
            The PSNR in dB.

        Raises:
            EngineError: under `min_db` without `allow_lossy` (again on every later call).
        """
        with self._lock:
            if not self.done and self._refusal is None and self._model is not None:
                self.db = psnr(output.float(), fp32_reference(self._model, frame[:1], engine))
                if self.db < self.min_db:
                    message = (
                        f"precision={engine.precision!r} on the {engine.backend} engine differs from fp32 by "
                        f"{self.db:.1f} dB PSNR on this input (minimum {self.min_db:.0f} dB)"
                    )
                    if not self.allow_lossy:
                        self._refusal = message + "; use precision='fp32', or allow_lossy=True to accept it"
                    elif self.warn is not None:
                        self.warn(message + "; going on because of allow_lossy=True")
                    else:
                        warnings.warn(message + "; going on because of allow_lossy=True", LossyEngineWarning, stacklevel=3)
                if self._refusal is None:
                    self.done, self._model = True, None  # the reference is not needed again
        if self._refusal is not None:
            raise EngineError(self._refusal)
        return self.db


def check_accuracy(
    engine: Engine, model: BRN, frame: Tensor, allow_lossy: bool = False, warn: Callable[[str], None] = print, batch: int = 1
) -> float | None:
    """Run the guard on `frame` now, as the CLI did before engines checked themselves.

    Replaces the engine's guard with one for `allow_lossy` that reports to `warn` (as
    "warning: ..."), then runs it (`Engine.check`).

    Returns:
        None for FP32 engines; else the PSNR against FP32 in dB.

    Raises:
        EngineError: under MIN_PSNR_DB without `allow_lossy`.
    """
    if engine.precision == "fp32":
        return None
    engine.guard = AccuracyGuard(model, allow_lossy, warn=lambda message: warn(f"warning: {message}"))
    return engine.check(frame, batch)
