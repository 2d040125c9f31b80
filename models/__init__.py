"""The BRN family, its checkpoints and weights, and the paper's quality metrics."""

from derain.models.brn import (
    BRN,
    BRNConfig,
    CheckpointError,
    Derainer,
    checkpoint_filter_fn,
    derain,
    pretrained_cfgs,
)
from derain.models.checkpoint import load_checkpoint, save_checkpoint
from derain.models.hub import BUILTIN_NAME, WeightInfo, fetch, list_weights, load_model, resolve_weights

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
