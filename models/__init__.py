"""The BRN family, its checkpoints and weights, and the paper's quality metrics.

Names are imported on first use: `derain.models.errors`, which the video I/O layer raises,
must not pull in torch with this package (the I/O tests run on an install without it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it.
_EXPORTS = {
    "BRN": "derain.models.brn",
    "BRNConfig": "derain.models.brn",
    "CheckpointError": "derain.models.brn",
    "Derainer": "derain.models.brn",
    "checkpoint_filter_fn": "derain.models.brn",
    "derain": "derain.models.brn",
    "pretrained_cfgs": "derain.models.brn",
    "load_checkpoint": "derain.models.checkpoint",
    "save_checkpoint": "derain.models.checkpoint",
    "BUILTIN_NAME": "derain.models.hub",
    "WeightInfo": "derain.models.hub",
    "fetch": "derain.models.hub",
    "list_weights": "derain.models.hub",
    "load_model": "derain.models.hub",
    "resolve_weights": "derain.models.hub",
}

__all__ = [
    "BRN",
    "BUILTIN_NAME",
    "BRNConfig",
    "CheckpointError",
    "Derainer",
    "WeightInfo",
    "checkpoint_filter_fn",
    "derain",
    "fetch",
    "list_weights",
    "load_checkpoint",
    "load_model",
    "pretrained_cfgs",
    "resolve_weights",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'derain.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from derain.models.brn import BRN, BRNConfig, CheckpointError, Derainer, checkpoint_filter_fn, derain, pretrained_cfgs
    from derain.models.checkpoint import load_checkpoint, save_checkpoint
    from derain.models.hub import BUILTIN_NAME, WeightInfo, fetch, list_weights, load_model, resolve_weights
