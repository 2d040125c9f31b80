"""Temporal fusion of derained frames: what one frame alone shows (a residual streak, a flicker)
goes, what its aligned neighbours agree on stays.

Each of the K-1 neighbours of a frame is moved onto it along DIS optical flow (models/flow.py).
A neighbour's pixel takes part only where the alignment is trusted: the forward-backward flow
check passes, and the neighbour's coarse structure (luma with thin lines median-filtered out,
then blurred) matches the frame's, which rejects moving objects the flow missed while letting a
streak - thin, so filtered out - be outvoted. A neighbour that matches on too few pixels (a
scene cut) is dropped whole. Where no neighbour is trusted the frame keeps its own pixel.

Two rules combine the aligned samples:
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
from derain.models.flow import luma8, motion

FUSION_RULES = ("median", "mean")
STRUCTURE_TOLERANCE = 12.0  # luma codes of coarse structure a trusted neighbour may differ by
CUT_FRACTION = 0.5  # a neighbour trusted on fewer pixels than this is another scene
# Streaks jitter the flow of a still scene by a pixel or so; the structure check catches what a
# looser forward-backward bound lets through.
FB_BETA = 2.0
AGREEMENT = 6.0 / 255.0  # luma (0-1) scale of the mean rule's agreement weight
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def check_temporal(k: int, rule: str = "mean") -> None:
    """Refuse a window that is not odd and positive, or an unknown rule."""
    if k < 1 or k % 2 == 0:
        raise InputError(f"temporal={k}: give an odd number of frames (1 is off, 3 or 5 fuse)")
    if rule not in FUSION_RULES:
        raise InputError(f"fusion rule {rule!r}: use one of {', '.join(FUSION_RULES)}")


def structure(rgb: np.ndarray) -> np.ndarray:
    """Coarse luma in 8-bit codes (float32): lines up to two pixels wide removed, then blurred."""
    return cv2.GaussianBlur(cv2.medianBlur(luma8(rgb), 5).astype(np.float32), (0, 0), 2.0)


def align(neighbour: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`neighbour` moved onto `centre` (both float32 RGB), and the (H, W) bool mask of trusted pixels."""
    step = motion(centre, neighbour, despeckle=True, beta=FB_BETA)
    warped = step.warp(neighbour)
    same = np.abs(structure(centre) - step.warp(structure(neighbour))) < STRUCTURE_TOLERANCE
    valid = step.valid & same
    if valid.mean() < CUT_FRACTION:
        valid = np.zeros_like(valid)
    return warped, valid


def fuse_window(frames: Sequence[np.ndarray], centre: int, rule: str = "mean") -> np.ndarray:
    """Frame `centre` of `frames` (float32 RGB in [0, 1], one size) fused with the others by `rule`."""
    check_temporal(1, rule)
    own = np.asarray(frames[centre], np.float32)
    samples, trusted = [own], [np.ones(own.shape[:2], bool)]
    for j, frame in enumerate(frames):
        if j != centre:
            warped, valid = align(np.asarray(frame, np.float32), own)
            samples.append(np.where(valid[..., None], warped, own))
            trusted.append(valid)
    stack = np.stack(samples)
    median = np.median(stack, axis=0)
    if rule == "median":
        return median.astype(np.float32)
    agreement = np.exp(-0.5 * ((stack @ LUMA - median @ LUMA) / AGREEMENT) ** 2)
    weights = np.stack(trusted) * agreement
    weights[0] += 1e-6  # a pixel no sample agrees on keeps the frame's own value
    return (np.sum(weights[..., None] * stack, axis=0) / np.sum(weights, axis=0)[..., None]).astype(np.float32)


def fuse_sequence(frames: Sequence[np.ndarray], k: int, rule: str = "median") -> list[np.ndarray]:
    """Every frame fused with up to (k-1)/2 neighbours on each side (fewer at the ends)."""
    check_temporal(k, rule)
    half = k // 2
    return [fuse_window(frames[max(0, t - half) : t + half + 1], min(t, half), rule) for t in range(len(frames))]
