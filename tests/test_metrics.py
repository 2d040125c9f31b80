"""The paper's metrics against scikit-image's independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derain.models.metrics import psnr_y, rgb_to_y, ssim, ssim_y, to_uint8_truncated


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-20, 21, clean.shape), 0, 255).astype(np.uint8)
    return noisy, clean


def test_luma_is_matlab_rgb2ycbcr(pair) -> None:
    image, _ = pair
    assert np.abs(rgb_to_y(image) * 255 - rgb2ycbcr(image)[..., 0]).max() < 1e-9
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235 / 255)


def test_psnr_matches_skimage(pair) -> None:
    a, b = pair
    expected = peak_signal_noise_ratio(rgb_to_y(b), rgb_to_y(a), data_range=1.0)
    assert psnr_y(a, b) == pytest.approx(expected, abs=1e-10)
    assert psnr_y(b, b) == float("inf")


def test_ssim_matches_skimage(pair) -> None:
    a, b = pair
    expected = structural_similarity(
        rgb_to_y(a) * 255, rgb_to_y(b) * 255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )
    assert ssim_y(a, b) == pytest.approx(expected, abs=1e-10)
    assert ssim_y(b, b) == pytest.approx(1.0)


def test_truncation_not_rounding() -> None:
    assert to_uint8_truncated(np.array([0.999, 254.9 / 255, -0.2, 1.5])).tolist() == [254, 254, 0, 255]


def test_torch_ssim_is_differentiable_and_batched() -> None:
    a = torch.rand(2, 3, 24, 24, requires_grad=True)
    b = torch.rand(2, 3, 24, 24)
    loss = -ssim(a, b)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    per_image = ssim(a.detach(), b, reduce=False)
    assert per_image.shape == (2,)
    assert float(ssim(b, b)) == pytest.approx(1.0, abs=1e-6)
