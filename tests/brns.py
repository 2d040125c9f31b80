"""BRNs with known weights for the tests."""

from __future__ import annotations

import torch

from derain.models import BRN


def random_brn(variant: str = "brn", stages: int = 4, seed: int = 0) -> BRN:
    """A BRN with weights large enough that every layer visibly matters."""
    torch.manual_seed(seed)
    model = BRN(variant, stages)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.15)
    return model.eval()


def plain_brn(variant: str = "brn", stages: int = 4, seed: int = 0) -> BRN:
    """A BRN with PyTorch's default initialisation: activations of order one, as in a trained model."""
    torch.manual_seed(seed)
    return BRN(variant, stages).eval()
