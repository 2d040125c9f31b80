"""The baseline every row is compared with: BRN as its authors ran it.

`AuthorsBRN` keeps the authors' module layout (nn.Sequential blocks under their key names,
four separate gate convolutions per branch, the two rain residual blocks that are declared but
never called) and loads our weights through `to_authors_state_dict`. `AuthorsBaseline` runs it
the way their test script does: eager FP32, one frame at a time, the frame going from a numpy
array to the device and the result coming back to a numpy array on the host.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor, nn

from derain.models.brn import (
    BRN,
    FEATURES,
    IMAGE_BLOCKS,
    RAIN_BLOCKS,
    VARIANTS,
    to_authors_state_dict,
)

# The authors declare five residual blocks in both branches; the rain branch calls three.
DECLARED_BLOCKS = 5


def _conv(cin: int, cout: int, *activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), *activation)


class AuthorsBRN(nn.Module):
    """The BRN family in the authors' layout; `forward(y)` returns the final (x, r)."""

    def __init__(self, variant: str = "brn", stages: int = 4) -> None:
        super().__init__()
        self.variant, self.stages = variant, stages
        rain_reads_image, image_reads_rain = VARIANTS[variant]
        for suffix, cin, reads_other in (("", 9, image_reads_rain), ("_r", 6, rain_reads_image)):
            gate_in = FEATURES * (3 if reads_other else 2)
            self.add_module(f"conv0{suffix}", _conv(cin, FEATURES, nn.ReLU()))
            for gate, act in (("i", nn.Sigmoid), ("f", nn.Sigmoid), ("g", nn.Tanh), ("o", nn.Sigmoid)):
                self.add_module(f"conv_{gate}{suffix}", _conv(gate_in, FEATURES, act()))
            for k in range(1, DECLARED_BLOCKS + 1):
                self.add_module(f"res_conv{k}{suffix}", _conv(FEATURES, FEATURES, nn.ReLU(), nn.Conv2d(FEATURES, FEATURES, 3, 1, 1), nn.ReLU()))
            self.add_module(f"conv{suffix}", _conv(FEATURES, 3))
        self.reads_other = {"": image_reads_rain, "_r": rain_reads_image}

    @classmethod
    def from_brn(cls, model: BRN) -> AuthorsBRN:
        authors = cls(model.variant, model.stages)
        authors.load_state_dict(to_authors_state_dict(model))
        return authors.eval()

    def _branch(self, s: str, inp: Tensor, h: Tensor, c: Tensor, h_other: Tensor, blocks: int) -> tuple[Tensor, Tensor, Tensor]:
        z = getattr(self, f"conv0{s}")(inp)
        z = torch.cat((z, h, h_other) if self.reads_other[s] else (z, h), 1)
        i = getattr(self, f"conv_i{s}")(z)
        f = getattr(self, f"conv_f{s}")(z)
        g = getattr(self, f"conv_g{s}")(z)
        o = getattr(self, f"conv_o{s}")(z)
        c = f * c + i * g
        h = o * torch.tanh(c)
        z = h
        for k in range(1, blocks + 1):
            z = torch.relu(getattr(self, f"res_conv{k}{s}")(z) + z)
        return getattr(self, f"conv{s}")(z), h, c

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        b, _, height, width = y.shape
        h = c = h_r = c_r = torch.zeros(b, FEATURES, height, width, device=y.device)
        x = r = y
        for _ in range(self.stages):
            r, h_r, c_r = self._branch("_r", torch.cat((y, r), 1), h_r, c_r, h, RAIN_BLOCKS)
            x, h, c = self._branch("", torch.cat((y, x, r), 1), h, c, h_r, IMAGE_BLOCKS)
        return x, r


class AuthorsBaseline:
    """One frame at a time, eager FP32, host round trip: what a user of the authors' code gets."""

    def __init__(self, model: BRN, device: torch.device) -> None:
        start = time.perf_counter()
        self.device = device
        self.module = AuthorsBRN.from_brn(model).to(device)
        if device.type == "cuda":
            # FP32 as the authors ran it (their GPUs had no TF32), whichever engine ran before.
            torch.backends.cudnn.allow_tf32 = False
        self.build_seconds = time.perf_counter() - start

    def run(self, frame: np.ndarray) -> np.ndarray:
        """An H x W x 3 float32 frame in [0, 1] -> the derained frame, also on the host."""
        y = torch.tensor(np.expand_dims(frame.transpose(2, 0, 1), 0)).to(self.device)
        with torch.no_grad():
            out, _ = self.module(y)
            out = torch.clamp(out, 0.0, 1.0)
        return out.cpu().numpy().squeeze()
