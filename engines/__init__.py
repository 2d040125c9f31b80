"""Engines: a BRN made runnable for a device and precision, behind one interface."""

from __future__ import annotations

import torch

from derain.engines.base import PRECISIONS, Engine, EngineError, select_device, select_precision
from derain.engines.eager import EagerEngine
from derain.models.brn import BRN

BACKENDS = ("auto", "eager")

__all__ = ["BACKENDS", "PRECISIONS", "Engine", "EngineError", "build_engine", "select_device", "select_precision"]


def build_engine(
    model: BRN,
    backend: str = "auto",
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> Engine:
    """The engine for `model` on `device`; `auto` takes the best backend available there."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    prec = select_precision(precision, dev)
    if backend not in BACKENDS:
        raise EngineError(f"--engine {backend!r}: use one of {', '.join(BACKENDS)}")
    return EagerEngine(model, dev, prec)
