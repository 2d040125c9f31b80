"""Dense optical flow between video frames, warping along it, and where it can be trusted.

Flow is OpenCV's DIS (Kroeger et al., ECCV 2016) on 8-bit luma: fast enough for every frame
pair of a job on a CPU, and deterministic. A flow field `flow` from frame A to frame B says
where each pixel of A is in B: A(x) ~ B(x + flow(x)), so `warp(B, flow)` is B seen from A.
A pixel is trusted when the flow back from B lands where it started (the forward-backward
check of Sundaram et al., ECCV 2010, the occlusion test of Lai et al., ECCV 2018) and its
source lies inside B.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Sundaram et al.'s consistency test: |f + b|^2 < ALPHA (|f|^2 + |b|^2) + BETA (pixels^2).
FB_ALPHA, FB_BETA = 0.01, 0.5


def luma8(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma (BT.601 weights, full range) of an RGB frame, uint8 or float in [0, 1]."""
    u8 = rgb if rgb.dtype == np.uint8 else (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(u8), cv2.COLOR_RGB2GRAY)


def optical_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow (dx, dy) from luma `src` to luma `dst`: src(x) ~ dst(x + flow(x))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(src, dst, None)


def _coords(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` sampled at x + flow(x) (bilinear; borders replicated, `inside` tells them apart)."""
    map_x, map_y = _coords(flow)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: where x + flow(x) lies within the frame."""
    height, width = flow.shape[:2]
    map_x, map_y = _coords(flow)
    return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)


def consistent(forward: np.ndarray, backward: np.ndarray, beta: float = FB_BETA) -> np.ndarray:
    """(H, W) bool: where the flow A->B (`forward`) is undone by B->A (`backward`) to within
    Sundaram et al.'s bound (`beta` in pixels squared) and stays in the frame."""
    back = warp(backward, forward)
    mismatch = np.sum((forward + back) ** 2, axis=-1)
    bound = FB_ALPHA * (np.sum(forward**2, axis=-1) + np.sum(back**2, axis=-1)) + beta
    return (mismatch < bound) & inside(forward)


@dataclass(frozen=True)
class Motion:
    """How frame A maps onto frame B: the flow A->B and the pixels of A where it is trusted."""

    flow: np.ndarray
    valid: np.ndarray

    def warp(self, image_b: np.ndarray) -> np.ndarray:
        """Frame B (any channels, same size) moved onto frame A."""
        return warp(image_b, self.flow)


def motion(a: np.ndarray, b: np.ndarray, despeckle: bool = False, beta: float = FB_BETA) -> Motion:
    """The motion from RGB frame `a` to RGB frame `b`, occlusions masked by the forward-backward check.

    With `despeckle` the flow is found on luma with lines up to two pixels wide median-filtered
    out: rain streaks move on their own and would otherwise drag the flow of a still scene along.
    `beta` loosens the forward-backward bound (pixels squared) for a caller with checks of its own.
    """
    ya, yb = luma8(a), luma8(b)
    if despeckle:
        ya, yb = cv2.medianBlur(ya, 5), cv2.medianBlur(yb, 5)
    forward = optical_flow(ya, yb)
    return Motion(forward, consistent(forward, optical_flow(yb, ya), beta))
