"""Temporal fusion of derained frames: what one frame alone shows (a residual streak, a flicker,
the model's guess at what a streak hid) goes, what its aligned neighbours agree on stays.

Each neighbour in a frame's window (centred for files, past frames only for live jobs) is moved
onto it along DIS optical flow (models/flow.py). A neighbour's pixel takes part only where the
alignment is trusted: the forward-backward flow check passes, and the neighbour's coarse
structure (luma with thin lines median-filtered out, then blurred) matches the frame's, which
rejects moving objects the flow missed while letting a streak - thin, so filtered out - be
outvoted. A neighbour that matches on too few pixels (a scene cut) is dropped whole. Where no
neighbour is trusted the frame keeps its own pixel.

Three rules combine the aligned samples:
- "rain" (the default): rain only brightens, and a streak is somewhere else in every frame. A
  pixel is suspected of rain when the model removed light there (the rainy frame's luma minus
  the derained frame's) or when it is brighter than the aligned samples' median by a clear
  margin (a streak the model missed). Only suspected pixels change: they take the mean of the
  trusted neighbours that are not suspected at that point, in proportion to the suspicion. The
  rest of the frame - most of it - keeps its own pixels, so warps never soften clean texture.
- "median": the per-pixel, per-channel median of the frame and its neighbours, untrusted
  neighbour pixels standing in as the frame's own value (so an unreliable pixel stays put);
- "mean": a confidence-weighted mean: each sample weighted by its trust and by how closely its
  luma agrees with that median (a Gaussian in luma codes), so one odd frame weighs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from derain.models.errors import InputError
from derain.models.flow import Motion, luma8, motion

FUSION_RULES = ("rain", "mean", "median")
STRUCTURE_TOLERANCE = 12.0  # luma codes of coarse structure a trusted neighbour may differ by
CUT_FRACTION = 0.5  # a neighbour trusted on fewer pixels than this is another scene
# Streaks jitter the flow of a still scene by a pixel or so; the structure check catches what a
# looser forward-backward bound lets through.
FB_BETA = 2.0
AGREEMENT = 6.0 / 255.0  # luma (0-1) scale of the mean rule's agreement weight
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# The rain rule, in 8-bit luma codes (tuned on benchmarks/temporal_data.py, see RESULTS.md):
RAIN_CODES = 6.0  # light removed (or excess brightness) at which a pixel is half suspected of rain
RAIN_SOFTNESS = 3.0  # width of the suspicion's logistic step
OUTLIER_CODES = 12.0  # brightness over the aligned median that a warp's softening can explain


def check_temporal(k: int, rule: str = "rain") -> None:
    """Refuse a window that is not odd and positive, or an unknown rule."""
    if k < 1 or k % 2 == 0:
        raise InputError(f"temporal={k}: give an odd number of frames (1 is off, 3 or 5 fuse)")
    if rule not in FUSION_RULES:
        raise InputError(f"fusion rule {rule!r}: use one of {', '.join(FUSION_RULES)}")


def removed_light(rainy: np.ndarray, derained: np.ndarray) -> np.ndarray:
    """(H, W) float32: luma (8-bit codes) the model took away from a frame, both float RGB in [0, 1]."""
    return (np.asarray(rainy, np.float32) - np.asarray(derained, np.float32)) @ LUMA * np.float32(255.0)


def structure(rgb: np.ndarray) -> np.ndarray:
    """Coarse luma in 8-bit codes (float32): lines up to two pixels wide removed, then blurred."""
    return cv2.GaussianBlur(cv2.medianBlur(luma8(rgb), 5).astype(np.float32), (0, 0), 2.0)


def align(neighbour: np.ndarray, centre: np.ndarray) -> tuple[Motion, np.ndarray]:
    """The motion from `centre` to `neighbour` (float32 RGB) and the (H, W) bool mask of the
    centre's pixels where the neighbour moved along it is trusted."""
    step = motion(centre, neighbour, despeckle=True, beta=FB_BETA)
    same = np.abs(structure(centre) - step.warp(structure(neighbour))) < STRUCTURE_TOLERANCE
    valid = step.valid & same
    if valid.mean() < CUT_FRACTION:
        valid = np.zeros_like(valid)
    return step, valid


def _clean_odds(suspicion: np.ndarray) -> np.ndarray:
    """1 where a pixel is not suspected of rain, 0 where it surely is (a logistic step, overflow-free)."""
    return 0.5 - 0.5 * np.tanh((suspicion - RAIN_CODES) / (2.0 * RAIN_SOFTNESS))


def _rain_rule(stack: np.ndarray, trusted: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The "rain" rule on aligned samples (own first): suspected pixels of the frame take the
    trusted neighbours that are clean there."""
    luma = stack @ LUMA * np.float32(255.0)
    excess = np.maximum(luma - np.median(luma, axis=0) - OUTLIER_CODES, 0.0)
    clean = _clean_odds(removed + excess)
    weights = trusted[1:] * clean[1:]
    total = weights.sum(axis=0)
    neighbours = np.sum(weights[..., None] * stack[1:], axis=0) / np.maximum(total, 1e-6)[..., None]
    mix = (1.0 - clean[0]) * total / (total + 1e-3)
    return stack[0] + mix[..., None] * (neighbours - stack[0])


def fuse_window(frames: Sequence[np.ndarray], centre: int, rule: str = "rain",
                removed: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Frame `centre` of `frames` (float32 RGB in [0, 1], one size) fused with the others by `rule`.

    `removed`: per frame, the luma the model took away (`removed_light`); the rain rule reads it
    (without it, only streaks brighter than their aligned neighbours are suspected).
    """
    check_temporal(1, rule)
    own = np.asarray(frames[centre], np.float32)
    nothing = np.zeros(own.shape[:2], np.float32)
    samples, trusted = [own], [np.ones(own.shape[:2], bool)]
    taken = [removed[centre] if removed is not None else nothing]
    for j, frame in enumerate(frames):
        if j != centre:
            neighbour = np.asarray(frame, np.float32)
            step, valid = align(neighbour, own)
            samples.append(np.where(valid[..., None], step.warp(neighbour), own))
            trusted.append(valid)
            taken.append(step.warp(removed[j]) if removed is not None else nothing)
    stack = np.stack(samples)
    if rule == "rain":
        return _rain_rule(stack, np.stack(trusted), np.stack(taken)).astype(np.float32)
    median = np.median(stack, axis=0)
    if rule == "median":
        return median.astype(np.float32)
    agreement = np.exp(-0.5 * ((stack @ LUMA - median @ LUMA) / AGREEMENT) ** 2)
    weights = np.stack(trusted) * agreement
    weights[0] += 1e-6  # a pixel no sample agrees on keeps the frame's own value
    return (np.sum(weights[..., None] * stack, axis=0) / np.sum(weights, axis=0)[..., None]).astype(np.float32)


def window(t: int, k: int, causal: bool = False) -> tuple[int, int]:
    """(first, centre offset) of frame t's window of k frames: centred ((k-1)/2 either side,
    fewer at the start), or causal (frame t and up to k-1 frames before it)."""
    first = max(0, t - (k - 1 if causal else k // 2))
    return first, t - first


def fuse_sequence(frames: Sequence[np.ndarray], k: int, rule: str = "rain",
                  removed: Sequence[np.ndarray] | None = None, causal: bool = False) -> list[np.ndarray]:
    """Every frame fused with its window of up to k frames (see `window`), by `rule`."""
    check_temporal(k, rule)
    fused = []
    for t in range(len(frames)):
        first, centre = window(t, k, causal)
        last = t + 1 if causal else t + k // 2 + 1
        fused.append(fuse_window(frames[first:last], centre, rule, removed[first:last] if removed is not None else None))
    return fused
