"""The one interface every backend implements (the Engine base class), and the choice of device and precision."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, overload

import numpy as np
import torch
from torch import Tensor

from derain.models.errors import EngineError, InputError

if TYPE_CHECKING:
    from derain.engines.accuracy import AccuracyGuard

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Engine(ABC):
    """A model made runnable for one device and precision; every backend is one.

    `run(batch)` takes a float batch (B, 3, H, W) in [0, 1] and returns the derained batch,
    clamped to [0, 1], on `device` in `dtype`. Calling the engine does the same for a tensor, and
    takes and gives back a plain RGB image (H, W, 3) as a NumPy array.

    A reduced-precision engine made by `build_engine` carries an accuracy guard: the first batch
    it runs (or the sample given to `check` before) is compared with the FP32 model, once, and an
    engine that strays too far refuses to run (see `derain.engines.accuracy`). cuDNN's flags are
    set only around the engine's own work, and restored after it.
    """

    backend: str
    device: torch.device
    precision: str
    dtype: torch.dtype
    build_seconds: float
    guard: AccuracyGuard | None = None
    # Builds (or chooses) something for each input shape on first sight: worth doing on a job's
    # first frame before any output is written (`check`), rather than in the middle of the job.
    per_shape: bool = False

    @abstractmethod
    def _run(self, batch: Tensor) -> Tensor:
        """The backend's own work on a batch, with no check and no flags set."""

    def run_unchecked(self, batch: Tensor) -> Tensor:
        """`run` without the accuracy guard (what the guard itself measures)."""
        with cudnn_flags(self.precision):
            return self._run(batch)

    def run(self, batch: Tensor) -> Tensor:
        """The derained batch (B, 3, H, W), on `device` in `dtype`.

        Raises:
            EngineError: the engine cannot run here, or its first batch strays from FP32 beyond
                the guard (without allow_lossy).
        """
        out = self.run_unchecked(batch)
        if self.guard is not None:
            self.guard.judge(self, batch[:1], out[:1])
        return out

    def check(self, sample: Tensor | np.ndarray, batch: int = 1) -> float | None:
        """Run the accuracy guard now, on the first frame of `sample`, rather than on the first batch.

        Args:
            sample: a batch (B, 3, H, W) float in [0, 1], or an RGB image as `__call__` takes it.
            batch: the batch size the job will run: engines built per shape (`per_shape`:
                compile, tensorrt, openvino, auto on the CPU) build or choose for that shape here,
                and only that one, FP32 or not.

        Returns:
            The PSNR in dB against FP32 (also kept as `accuracy_db`); None for an engine without
            a guard (FP32, or not made by `build_engine`).

        Raises:
            EngineError: the engine strays from FP32 beyond the guard (without allow_lossy).
        """
        checked = self.guard is None or self.guard.done
        if checked and not self.per_shape:
            return self.accuracy_db
        frame = (image_to_batch(sample, self.device) if isinstance(sample, np.ndarray) else sample)[:1].to(self.device)
        out = self.run_unchecked(frame.expand(batch, -1, -1, -1).contiguous())
        if checked or self.guard is None:
            return self.accuracy_db
        return self.guard.judge(self, frame, out[:1])

    @property
    def accuracy_db(self) -> float | None:
        """The PSNR (dB, peak 1) of this engine against FP32 as the guard measured it; None before."""
        return self.guard.db if self.guard is not None else None

    @overload
    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    @overload
    def __call__(self, image: Tensor) -> Tensor: ...

    def __call__(self, image: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """Derain an RGB image (H, W, 3) or a batch (B, 3, H, W).

        Args:
            image: a NumPy array H x W x 3 of uint8, uint16, or float32/float64 in [0, 1]; or a
                float tensor B x 3 x H x W in [0, 1] (run as `run` runs it).

        Returns:
            For an array, the derained image of the same shape and dtype (integers rounded to
            nearest, floats clamped to [0, 1]); for a tensor, what `run` returns.

        Raises:
            InputError: anything else.
        """
        if isinstance(image, Tensor):
            if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
                raise InputError(f"engine input: a tensor of shape {tuple(image.shape)} and dtype {image.dtype}; give a float batch B x 3 x H x W in [0, 1]")
            return self.run(image)
        if not isinstance(image, np.ndarray):
            raise InputError(f"engine input: a {type(image).__name__}; give an RGB image (NumPy array H x W x 3) or a tensor B x 3 x H x W")
        out = self.run(image_to_batch(image, self.device))[0].float().clamp(0.0, 1.0)
        if image.dtype.kind == "u":
            # +0.5 then truncation rounds to nearest, as the video path converts its frames.
            top = float(np.iinfo(image.dtype).max)
            return (out * top + 0.5).floor().permute(1, 2, 0).cpu().numpy().astype(image.dtype)
        return out.permute(1, 2, 0).cpu().numpy().astype(image.dtype)


IMAGE_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def image_to_batch(image: np.ndarray, device: torch.device) -> Tensor:
    """An RGB image (H, W, 3) as a float32 batch (1, 3, H, W) in [0, 1] on `device`.

    Raises:
        InputError: not H x W x 3, or not one of IMAGE_DTYPES.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in IMAGE_DTYPES or 0 in image.shape:
        raise InputError(
            f"engine input: an array of shape {image.shape} and dtype {image.dtype}; "
            "give an RGB image H x W x 3 of uint8, uint16, or float32/float64 in [0, 1]"
        )
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind == "u" else 1.0
    array = np.ascontiguousarray(image if image.dtype != np.uint16 else image.astype(np.int32))
    # Integers travel as they are (a quarter of the bytes of float32) and become floats on the device.
    tensor = torch.from_numpy(array).to(device).permute(2, 0, 1)[None].float()
    return tensor / scale if scale != 1.0 else tensor


@contextlib.contextmanager
def cudnn_flags(precision: str) -> Iterator[None]:
    """cuDNN settings for an engine's convolutions, set on entry and restored on exit.

    cuDNN's flags are process-wide, so an engine sets them only around its own work: the
    caller's settings hold everywhere else. Every frame of a job has one shape, so timing
    cuDNN's algorithms once per shape (`benchmark`) pays for itself within a few frames. And
    "fp32" means FP32: PyTorch lets cuDNN run FP32 convolutions in TF32 (a 10-bit mantissa) by
    default.
    """
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.allow_tf32
    cudnn.benchmark = True
    if precision == "fp32":
        cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32 = saved


def import_problem(module: str) -> str | None:
    """None when `module` imports; else why not, in a few words.

    A real import, not a look-up: a package built for another torch release is found but fails
    as it loads (an ImportError, or an OSError for a missing symbol), and must count as absent.
    """
    if importlib.util.find_spec(module) is None:
        return "not installed"
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - whatever a broken extension raises while loading
        first = str(err).splitlines()[0] if str(err) else ""
        return f"installed but fails to import ({type(err).__name__}{': ' + first[:160] if first else ''})"
    return None


def select_device(name: str | None = None) -> torch.device:
    """`name` as given ('cpu', 'cuda', 'cuda:1'), or CUDA when there is one, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError(f"device={name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"device={name!r}: this machine has no CUDA GPU that PyTorch can use; use device='cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise EngineError(f"device={name!r}: only cpu and cuda devices are supported")
    return device


def select_precision(name: str | None, device: torch.device) -> str:
    """`name` as given, or FP16 on a GPU and FP32 on the CPU (half is slow and inexact there)."""
    if name in (None, "auto"):
        return "fp16" if device.type == "cuda" else "fp32"
    if name not in PRECISIONS:
        raise EngineError(f"precision={name!r}: use one of {', '.join(PRECISIONS)}")
    return name


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
