"""The paper's evaluation: derain every rainy image of a set and score it against its ground truth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from derain.models.data import ImageError, read_image, read_image_uint8, to_uint8
from derain.models.metrics import psnr_y, ssim_y, to_uint8_truncated


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float


@dataclass
class EvalReport:
    dataset: str
    weights: str
    images: list[ImageScore] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.images)

    def mean(self, key: str) -> float:
        return float(np.mean([getattr(s, key) for s in self.images])) if self.images else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "weights": self.weights,
            "psnr": self.mean("psnr"),
            "ssim": self.mean("ssim"),
            "input_psnr": self.mean("input_psnr"),
            "input_ssim": self.mean("input_ssim"),
            "count": self.count,
            "protocol": "Y of BT.601 studio-swing YCbCr, output truncated to uint8; SSIM 11x11 gaussian "
            "sigma 1.5, valid filtering, on Y*255 (Shang et al. 2020)",
            "images": [asdict(s) for s in self.images],
        }


def score_image(run: Callable[[torch.Tensor], torch.Tensor], rainy: np.ndarray, clean: np.ndarray, name: str = "") -> ImageScore:
    """Score one pair by the paper's protocol: what `derain eval` and training's validation report.

    Args:
        run: rainy batch (1, 3, H, W) float in [0, 1] -> derained batch (an engine's run).
        rainy: float RGB (H, W, 3) in [0, 1], as the model gets it.
        clean: uint8 RGB (H, W, 3), the ground truth.
        name: what the score is called.

    Returns:
        The output's Y-PSNR and Y-SSIM (output truncated to uint8, as the authors saved theirs),
        and the input's (rounded to uint8: the rainy image as a file holds it).
    """
    batch = torch.from_numpy(np.ascontiguousarray(rainy, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        output = run(batch)
    derained = to_uint8_truncated(output[0].float().permute(1, 2, 0).cpu().numpy())
    rainy_u8 = to_uint8(rainy)
    return ImageScore(
        name=name,
        psnr=psnr_y(derained, clean),
        ssim=ssim_y(derained, clean),
        input_psnr=psnr_y(rainy_u8, clean),
        input_ssim=ssim_y(rainy_u8, clean),
    )


def evaluate(
    run: Callable[[torch.Tensor], torch.Tensor],
    pairs: Sequence[tuple[Path, Path]],
    dataset: str = "",
    weights: str = "",
    on_image: Callable[[ImageScore], None] | None = None,
) -> EvalReport:
    """Score `run` (an engine's run: (1, 3, H, W) in [0, 1] -> clean) on (rainy, clean) pairs.

    Raises:
        ImageError: an image cannot be read, or differs in size from its ground truth.
    """
    report = EvalReport(dataset, weights)
    for rainy_path, clean_path in pairs:
        rainy = read_image(rainy_path)
        clean = read_image_uint8(clean_path)
        if rainy.shape != clean.shape:
            raise ImageError(f"{rainy_path}: size {rainy.shape[1]}x{rainy.shape[0]} differs from its ground truth {clean_path}")
        score = score_image(run, rainy, clean, rainy_path.name)
        report.images.append(score)
        if on_image:
            on_image(score)
    return report
