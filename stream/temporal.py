"""Temporal fusion in a file or live job: derained frames fused with their neighbours
(models/temporal.py), each written once, with its own timestamp.

A file job's window is centred: a frame waits (K-1)/2 frames for the neighbours after it. A
live job's is causal: a frame is fused with the K-1 frames before it and leaves at once, so
the stage adds its compute and no frames of delay. It sits between the inference stage's
results and the sinks, on the thread that writes them: the frames arrive as the output's code
planes and go back as code planes, converted to RGB and back with the output's own matrix and
range (a pixel the fusion leaves alone keeps its codes).
"""

from __future__ import annotations

import numpy as np
import torch

from derain.models.temporal import check_temporal, fuse_window, window
from derain.stream.color import from_rgb, host_codes, to_rgb
from derain.stream.pixels import ColorSpec


class TemporalFilter:
    """Fuses each frame with up to k-1 neighbours: (k-1)/2 either side, or with `causal` the
    k-1 before it; `offset` columns on the left (the input half of a --compare picture) are
    left alone."""

    def __init__(self, k: int, color: ColorSpec, rule: str = "rain", offset: int = 0, causal: bool = False) -> None:
        check_temporal(k, rule)
        self.k, self.causal, self.color, self.rule, self.offset = k, causal, color, rule, offset
        self.after = 0 if causal else k // 2  # frames a frame waits for
        # (pts, float32 RGB, luma the model removed or None) still needed
        self.frames: list[tuple[int, np.ndarray, np.ndarray | None]] = []
        self.first = 0  # index in the sequence of self.frames[0]
        self.next = 0  # index of the next frame to write

    def _rgb(self, planes: list[np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(p.view(np.int16) if p.dtype == np.uint16 else p.copy())[None] for p in planes]
        return to_rgb(tensors, self.color)[0].clamp(0, 1).permute(1, 2, 0).numpy()

    def _planes(self, rgb: np.ndarray) -> list[np.ndarray]:
        return [host_codes(p)[0] for p in from_rgb(torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous(), self.color)]

    def _emit(self) -> tuple[int, list[np.ndarray]]:
        """Fuse and hand on frame `self.next`; forget the frames no later one needs."""
        start, centre = window(self.next, self.k, self.causal)
        held = self.frames[start - self.first : self.next - self.first + self.after + 1]
        pts, own, _ = held[centre]
        removed = [r for _, _, r in held if r is not None]
        fused = own.copy()
        fused[:, self.offset :] = fuse_window([rgb[:, self.offset :] for _, rgb, _ in held], centre, self.rule,
                                              removed if len(removed) == len(held) else None)
        self.next += 1
        drop = max(0, window(self.next, self.k, self.causal)[0] - self.first)
        self.frames, self.first = self.frames[drop:], self.first + drop
        return pts, self._planes(fused)

    def push(self, pts: int, planes: list[np.ndarray], removed: np.ndarray | None = None) -> list[tuple[int, list[np.ndarray]]]:
        """Take one derained frame (and the luma the model removed from it, for the rain rule);
        the frames now ready to write, as (pts, planes), in order: with `causal`, this one."""
        self.frames.append((pts, self._rgb(planes), removed))
        ready = []
        while self.next + self.after < self.first + len(self.frames):
            ready.append(self._emit())
        return ready

    def flush(self) -> list[tuple[int, list[np.ndarray]]]:
        """The frames held back, once the last has come."""
        return [self._emit() for _ in range(self.first + len(self.frames) - self.next)]
