"""Quality metrics as the paper computed them (DESIGN.md section 3).

The derained image is truncated to uint8 (the authors saved PNGs that way), both images go to
the Y channel of BT.601 studio-swing YCbCr (MATLAB's rgb2ycbcr) in double precision, PSNR is
taken on Y with peak 1 and SSIM (Wang et al. 2004) on Y*255 with 'valid' filtering.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def to_uint8_truncated(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8 by truncation, as the authors saved their outputs."""
    return (np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> BT.601 studio-swing luma in [16/255, 235/255], float64."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 / 255.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def psnr(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """PSNR in dB, peak 1, of two float images (NumPy arrays or tensors alike), in float64."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        mse = float(torch.mean((a.double() - b.double()) ** 2))
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    else:
        raise TypeError(f"psnr of a {type(a).__name__} and a {type(b).__name__}: give two arrays or two tensors")
    return float("inf") if mse == 0.0 else 10.0 * np.log10(1.0 / mse)


def psnr_y(output: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB on the Y channel, peak 1; both uint8 RGB."""
    mse = float(np.mean((rgb_to_y(output) - rgb_to_y(target)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(1.0 / mse)


def ssim_y(output: np.ndarray, target: np.ndarray) -> float:
    """SSIM on the Y channel scaled to [0, 255]; both uint8 RGB."""
    a = torch.from_numpy(rgb_to_y(output) * 255.0)[None, None]
    b = torch.from_numpy(rgb_to_y(target) * 255.0)[None, None]
    return float(ssim(a, b, data_range=255.0))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float64) -> Tensor:
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, reduce: bool = True) -> Tensor:
    """SSIM of two (B, C, H, W) batches, channel by channel, 'valid' Gaussian filtering.

    Differentiable, so training uses it as its loss. With `reduce` the mean over everything;
    otherwise one value per image.
    """
    channels = a.shape[1]
    window = gaussian_window(dtype=a.dtype).to(a.device).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean() if reduce else s.flatten(1).mean(1)
