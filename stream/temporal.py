"""Temporal fusion in a file job: derained frames held back (K-1)/2 frames, each written once,
fused with its neighbours (models/temporal.py), with its own timestamp.

It sits between the inference stage's results and the encoder, on the encode thread: the
frames arrive as the output's code planes and go back as code planes, converted to RGB and
back with the output's own matrix and range (a pixel the fusion leaves alone keeps its codes).
"""

from __future__ import annotations

import numpy as np
import torch

from derain.models.temporal import check_temporal, fuse_window
from derain.stream.color import from_rgb, host_codes, to_rgb
from derain.stream.pixels import ColorSpec


class TemporalFilter:
    """Fuses each frame with up to (k-1)/2 frames either side; `offset` columns on the left
    (the input half of a --compare picture) are left alone."""

    def __init__(self, k: int, color: ColorSpec, rule: str = "mean", offset: int = 0) -> None:
        check_temporal(k, rule)
        self.half, self.color, self.rule, self.offset = k // 2, color, rule, offset
        self.frames: list[tuple[int, np.ndarray]] = []  # (pts, float32 RGB) still needed
        self.first = 0  # index in the sequence of self.frames[0]
        self.next = 0  # index of the next frame to write

    def _rgb(self, planes: list[np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(p.view(np.int16) if p.dtype == np.uint16 else p.copy())[None] for p in planes]
        return to_rgb(tensors, self.color)[0].clamp(0, 1).permute(1, 2, 0).numpy()

    def _planes(self, rgb: np.ndarray) -> list[np.ndarray]:
        return [host_codes(p)[0] for p in from_rgb(torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous(), self.color)]

    def _emit(self) -> tuple[int, list[np.ndarray]]:
        """Fuse and hand on frame `self.next`; forget the frames no later one needs."""
        index = self.next - self.first
        window = self.frames[max(0, index - self.half) : index + self.half + 1]
        centre = min(index, self.half)
        pts, own = self.frames[index]
        fused = own.copy()
        fused[:, self.offset :] = fuse_window([rgb[:, self.offset :] for _, rgb in window], centre, self.rule)
        self.next += 1
        drop = max(0, self.next - self.half - self.first)
        self.frames, self.first = self.frames[drop:], self.first + drop
        return pts, self._planes(fused)

    def push(self, pts: int, planes: list[np.ndarray]) -> list[tuple[int, list[np.ndarray]]]:
        """Take one derained frame; the frames now ready to write, as (pts, planes), in order."""
        self.frames.append((pts, self._rgb(planes)))
        ready = []
        while self.next + self.half < self.first + len(self.frames):
            ready.append(self._emit())
        return ready

    def flush(self) -> list[tuple[int, list[np.ndarray]]]:
        """The frames held back, once the last has come."""
        return [self._emit() for _ in range(self.first + len(self.frames) - self.next)]
