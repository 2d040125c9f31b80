"""derain: remove rain from images and video with BRN, the Bilateral Recurrent Network.

The public API is small and lives here; everything is imported on first use, so `import
derain` (and `derain --help`) stays fast and loads torch only when a model is needed.

    import derain

    report = derain.video("rainy.mp4", "clean.mp4", device="cpu")
    print(report.frames, report.fps)

    engine = derain.build_engine(derain.load_model("brn-r100l"), device="cpu")
    clean = engine(rgb)  # numpy H x W x 3 RGB in, the same shape and dtype out

Every failure a user can act on raises a `DerainError` subclass whose message is one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "DerainError": "derain.models.errors",
    "InputError": "derain.models.errors",
    "OutputError": "derain.models.errors",
    "WeightsError": "derain.models.errors",
    "EngineError": "derain.models.errors",
    "BRN": "derain.models.brn",
    "WeightInfo": "derain.models.hub",
    "list_weights": "derain.models.hub",
    "load_model": "derain.models.hub",
    "fetch_weights": "derain.api",
    "Engine": "derain.engines",
    "build_engine": "derain.engines",
    "image": "derain.api",
    "ImageReport": "derain.api",
    "video": "derain.api",
    "VideoReport": "derain.api",
    "live": "derain.api",
    "LiveReport": "derain.api",
    "LiveJob": "derain.api",
    "frames": "derain.api",
    "DerainedFrame": "derain.api",
    "batch": "derain.batching",
    "BatchReport": "derain.batching",
}

__all__ = [
    "__version__",
    "DerainError",
    "InputError",
    "OutputError",
    "WeightsError",
    "EngineError",
    "BRN",
    "WeightInfo",
    "list_weights",
    "load_model",
    "fetch_weights",
    "Engine",
    "build_engine",
    "image",
    "ImageReport",
    "video",
    "VideoReport",
    "live",
    "LiveReport",
    "LiveJob",
    "frames",
    "DerainedFrame",
    "batch",
    "BatchReport",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'derain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from derain.api import (
        DerainedFrame,
        ImageReport,
        LiveJob,
        LiveReport,
        VideoReport,
        fetch_weights,
        frames,
        image,
        live,
        video,
    )
    from derain.batching import BatchReport, batch
    from derain.engines import Engine, build_engine
    from derain.models.brn import BRN
    from derain.models.errors import DerainError, EngineError, InputError, OutputError, WeightsError
    from derain.models.hub import WeightInfo, list_weights, load_model
