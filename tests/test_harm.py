"""benchmarks/harm.py's measures say what they claim, on stand-in models (no weights needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from derain.benchmarks import harm
from derain.models.synth import RainStyle

identity = lambda batch: batch
darken = lambda batch: batch * 0.9


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB with fine structure: noise blurred a little."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 1.0) * 255).astype(np.uint8)


def test_a_model_that_changes_nothing_does_no_harm_and_gains_nothing() -> None:
    frames = [textured(48, 64, s) for s in range(3)]
    assert harm.clean_scores(identity, frames) == {"mean": float("inf"), "worst": float("inf")}
    assert harm.clean_scores(darken, frames)["worst"] < 30
    rainy = harm.rainy_sequence([f.astype(np.float32) / 255 for f in frames], RainStyle(density=0.01, intensity=0.5), 0, 10.0)
    scores = harm.sequence_scores(identity, frames, rainy)
    assert scores["gain"] == 0.0 and scores["worst_frame_gain"] == 0.0 and scores["input_psnr"] == scores["output_psnr"] < 40


def test_an_oracle_gains_on_every_frame() -> None:
    frames = [textured(48, 64, s) for s in range(3)]
    rainy = harm.rainy_sequence([f.astype(np.float32) / 255 for f in frames], RainStyle(density=0.01, intensity=0.5), 0, 10.0)
    clean = iter(frames)
    oracle = lambda batch: torch.from_numpy(next(clean)).permute(2, 0, 1)[None].float() / 255 + 0.5 / 255
    scores = harm.sequence_scores(oracle, frames, rainy)
    assert scores["worst_frame_gain"] > 5 and scores["output_psnr"] == float("inf")


def test_the_window_pans_without_resampling_the_scene() -> None:
    image = textured(300, 400).astype(np.float32) / 255
    first, later = harm.pan(image, 0), harm.pan(image, 4)
    assert first.shape == (harm.WINDOW[1], harm.WINDOW[0], 3)
    np.testing.assert_array_equal(first, image[: harm.WINDOW[1], : harm.WINDOW[0]])
    dx, dy = (round(4 * p) for p in harm.PAN)
    np.testing.assert_allclose(later[:100, :100], image[dy : dy + 100, dx : dx + 100], atol=1e-6)


def test_real_frame_measures_see_darkening_and_blur(tmp_path: Path) -> None:
    frames = [textured(480, 640, s) for s in range(2)]
    scores, crops = harm.real_scores(identity, frames)
    assert scores["luma_shift"] == 0.0 and set(scores["detail_kept"].values()) == {1.0}
    blur = lambda batch: torch.from_numpy(cv2.GaussianBlur(batch[0].permute(1, 2, 0).numpy(), (0, 0), 2.0)).permute(2, 0, 1)[None]
    blurred, _ = harm.real_scores(blur, frames)
    assert all(kept < 0.5 for kept in blurred["detail_kept"].values())
    assert harm.real_scores(darken, frames)[0]["luma_shift"] < -5
    harm.crop_sheet(tmp_path / "crops.png", [("input", crops), ("same", crops)])
    sheet = cv2.imread(str(tmp_path / "crops.png"))
    assert sheet.shape[0] == sum(2 * h + 4 for _, (_, _, _, h) in harm.CROPS) and sheet.shape[1] == 2 * (2 * 128 + 4)


def test_the_table_has_a_column_per_weights_and_a_row_per_measure() -> None:
    row = {
        "clean_photos": {"mean": 41.0, "worst": 39.5},
        "clean_video": {"mean": 40.0, "worst": 38.0},
        "sequences": {"light": {"input_psnr": 30.0, "output_psnr": 31.0, "gain": 1.0, "worst_frame_gain": -0.1}},
    }
    text = harm.table({"weights": {"builtin": row, "/x/run11.safetensors": row}})
    lines = text.splitlines()
    assert lines[0] == "| measure | builtin | run11 |" and len(lines) == 5
    assert "| light: input 30.00 dB; output, gain, worst frame | 31.00, +1.00, -0.10 | 31.00, +1.00, -0.10 |" in lines
