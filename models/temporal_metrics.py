"""Video quality: per-frame Y-PSNR/SSIM by the paper's protocol, and how steady the result is in time.

- Warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018): frame
  t-1 warped onto frame t along the optical flow, occluded pixels masked by the forward-backward
  check, and the squared RGB difference (images in [0, 1], summed over the channels) averaged
  over the pixels left, then over the frame pairs. The flow comes from the ground truth when
  there is one, otherwise from the derained output; the rainy input is scored along the same
  flow, so the two columns compare like with like. A pair across a scene cut (the check trusts
  under half the pixels) has no temporal figures: what two unrelated pictures differ by on the
  few pixels the check happens to pass says nothing of steadiness, and on a short clip that one
  pair would outweigh all the others.
- Flicker, a no-reference figure: the same alignment, but on low-frequency luma (Y of BT.601
  studio swing in 8-bit codes, Gaussian-blurred over a few pixels) and the mean absolute
  difference. Rain streaks and noise mostly blur away; what is left is brightness that pumps
  from frame to frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from derain.models.flow import Motion, motion
from derain.models.metrics import psnr_y, rgb_to_y, ssim_y, to_uint8_truncated
from derain.models.temporal import CUT_FRACTION, fuse_sequence, removed_light

FLICKER_SIGMA = 3.0  # pixels: wider than a streak, narrower than the scene's brightness changes
BORDER = round(2 * FLICKER_SIGMA)
PROTOCOL = (
    "psnr/ssim: Y of BT.601 studio-swing YCbCr, output truncated to uint8, SSIM 11x11 gaussian sigma 1.5 valid "
    "(Shang et al. 2020); warp_error: Lai et al. 2018, DIS flow t->t-1, forward-backward occlusion mask, squared "
    "RGB difference in [0, 1] summed over channels, mean over unmasked pixels and frame pairs, pairs with under "
    f"{CUT_FRACTION:.0%} of pixels unmasked (scene cuts) left out; flicker: mean absolute "
    f"difference of Gaussian-blurred (sigma {FLICKER_SIGMA} px) Y in 8-bit codes along the same flow"
)


def warp_error(current: np.ndarray, previous: np.ndarray, step: Motion) -> float:
    """Lai et al.'s warping error of one frame pair: `previous` moved onto `current` by `step`
    (the motion current -> previous), squared RGB difference summed over channels, mean over
    the trusted pixels. Both uint8 RGB; NaN when no pixel is trusted."""
    a = current.astype(np.float32) / 255.0
    b = step.warp(previous.astype(np.float32) / 255.0)
    squared = np.sum((a - b) ** 2, axis=-1)
    return float(squared[step.valid].mean()) if step.valid.any() else float("nan")


def low_luma(rgb: np.ndarray) -> np.ndarray:
    """Gaussian-blurred Y (BT.601 studio swing) in 8-bit codes, float32, of a uint8 RGB frame."""
    y = (rgb_to_y(rgb) * 255.0).astype(np.float32)
    return cv2.GaussianBlur(y, (0, 0), FLICKER_SIGMA)


def flicker(current: np.ndarray, previous: np.ndarray, step: Motion) -> float:
    """Mean absolute difference, in luma codes, of the low-frequency luma of `current` and of
    `previous` moved onto it by `step`, over the trusted pixels; NaN when none is."""
    difference = np.abs(low_luma(current) - step.warp(low_luma(previous)))
    # The blur reads past the borders, where two frames see different things: leave them out.
    trusted = np.zeros_like(step.valid)
    trusted[BORDER:-BORDER, BORDER:-BORDER] = step.valid[BORDER:-BORDER, BORDER:-BORDER]
    return float(difference[trusted].mean()) if trusted.any() else float("nan")


@dataclass
class FrameScore:
    """One frame's figures for the rainy input and the output; None where they do not apply
    (PSNR/SSIM without ground truth, temporal figures for the first frame and after a cut)."""

    index: int
    input_psnr: float | None = None
    input_ssim: float | None = None
    output_psnr: float | None = None
    output_ssim: float | None = None
    input_warp_error: float | None = None
    output_warp_error: float | None = None
    input_flicker: float | None = None
    output_flicker: float | None = None


METRICS = ("psnr", "ssim", "warp_error", "flicker")


@dataclass
class VideoScore:
    """A video's figures: per frame, and their means for the input and the output."""

    temporal: int = 1
    rule: str = "rain"
    flow_from: str = "output"
    frames: list[FrameScore] = field(default_factory=list)

    def mean(self, side: str, metric: str) -> float | None:
        """Mean of `side` ("input" or "output") `metric` over the frames that have it (NaN skipped)."""
        values = [getattr(f, f"{side}_{metric}") for f in self.frames]
        kept = [v for v in values if v is not None and not np.isnan(v)]
        return float(np.mean(kept)) if kept else None

    def to_dict(self) -> dict[str, object]:
        return {
            "frames": len(self.frames),
            "temporal": self.temporal,
            "rule": self.rule,
            "flow_from": self.flow_from,
            "input": {m: self.mean("input", m) for m in METRICS},
            "output": {m: self.mean("output", m) for m in METRICS},
            "protocol": PROTOCOL,
            "per_frame": [asdict(f) for f in self.frames],
        }


def score_sequences(
    rainy: Sequence[np.ndarray],
    output: Sequence[np.ndarray],
    clean: Sequence[np.ndarray] | None = None,
    on_frame: Callable[[FrameScore], None] | None = None,
) -> list[FrameScore]:
    """Score uint8 RGB `output` frames and the `rainy` frames they came from, frame by frame.

    Flow comes from `clean` when given, else from `output`; `clean` also gives PSNR and SSIM.
    """
    reference = clean if clean is not None else output
    scores = []
    for t in range(len(output)):
        score = FrameScore(t)
        if clean is not None:
            score.input_psnr, score.input_ssim = psnr_y(rainy[t], clean[t]), ssim_y(rainy[t], clean[t])
            score.output_psnr, score.output_ssim = psnr_y(output[t], clean[t]), ssim_y(output[t], clean[t])
        step = motion(reference[t], reference[t - 1]) if t > 0 else None
        if step is not None and step.valid.mean() >= CUT_FRACTION:
            score.input_warp_error = warp_error(rainy[t], rainy[t - 1], step)
            score.output_warp_error = warp_error(output[t], output[t - 1], step)
            score.input_flicker = flicker(rainy[t], rainy[t - 1], step)
            score.output_flicker = flicker(output[t], output[t - 1], step)
        scores.append(score)
        if on_frame is not None:
            on_frame(score)
    return scores


def derain_sequence(run: Callable[[torch.Tensor], torch.Tensor], rainy: Sequence[np.ndarray],
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> list[np.ndarray]:
    """Each uint8 RGB frame through `run` ((1, 3, H, W) in [0, 1] -> derained), as float32 RGB."""
    derained = []
    for frame in rainy:
        batch = torch.from_numpy(frame).permute(2, 0, 1)[None].to(device, dtype).div_(255.0)
        with torch.inference_mode():
            out = run(batch)
        derained.append(out[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
    return derained


def evaluate_video(
    run: Callable[[torch.Tensor], torch.Tensor],
    rainy: Sequence[np.ndarray],
    clean: Sequence[np.ndarray] | None = None,
    temporal: int = 1,
    rule: str = "rain",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_frame: Callable[[FrameScore], None] | None = None,
) -> VideoScore:
    """Derain uint8 RGB `rainy` frames with `run`, fuse them over `temporal` frames (1: off) by
    `rule`, and score input and output (see `score_sequences`). The output is truncated to
    uint8 before scoring, as the paper's protocol has it."""
    derained = derain_sequence(run, rainy, device, dtype)
    if temporal > 1:
        removed = [removed_light(frame.astype(np.float32) / 255.0, out) for frame, out in zip(rainy, derained)]
        derained = fuse_sequence(derained, temporal, rule, removed)
    output = [to_uint8_truncated(frame) for frame in derained]
    scores = score_sequences(rainy, output, clean, on_frame)
    return VideoScore(temporal, rule, "clean" if clean is not None else "output", scores)
