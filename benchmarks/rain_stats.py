"""How a paired set's rain compares with the synthesiser's, and where a model's error lies.

Rain is measured on luma (BT.601 studio swing, 8-bit codes, as `derain eval` scores): the rise
from the clean image to the rainy one. The histogram gives the share of all pixels whose rise
falls in each bin, so faint, dense rain and sparse, bright streaks of the same strength tell
apart where the input PSNR alone does not. With `--weights`, the model's squared error on the
set is split between rain pixels (rise over 4 codes) and the rest, with its mean bias on each:
rain left behind shows as a positive bias on rain pixels.

    python benchmarks/rain_stats.py DATASET [--photos DIR] [--draws 150] [--weights W]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from derain.models.data import find_pairs, list_images, read_image, read_image_uint8
from derain.models.hub import load_model
from derain.models.metrics import rgb_to_y, to_uint8_truncated
from derain.models.synth import RainSampler, add_rain

EDGES = (4, 8, 16, 24, 32, 48, 64, 96, 256)
RAIN_CODES = 4  # a luma rise above this many codes counts as rain


def luma(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> studio-swing luma in 8-bit codes."""
    return 255.0 * rgb_to_y(image)


def rise_stats(rainy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, float]:
    """(share of pixels in each rise bin, input PSNR on luma) for one uint8 pair."""
    rise = luma(rainy) - luma(clean)
    hist = np.histogram(rise[rise > RAIN_CODES], EDGES)[0] / rise.size
    return hist, float(10 * np.log10(255**2 / max(float(np.mean(rise**2)), 1e-12)))


def dataset_rain(pairs: list[tuple[Path, Path]]) -> dict:
    rows = [rise_stats(read_image_uint8(r), read_image_uint8(c)) for r, c in pairs]
    return summarise(rows)


def synthetic_rain(photos: list[Path], size: tuple[int, int], draws: int, sampler: RainSampler) -> dict:
    """The sampler's light rain on crops of `photos` the size of the set's images."""
    rng = np.random.default_rng(0)
    images = [read_image(p) for p in photos]
    rows = []
    for k in range(draws):
        image = images[k % len(images)]
        h, w = min(size[0], image.shape[0]), min(size[1], image.shape[1])
        y, x = int(rng.integers(0, image.shape[0] - h + 1)), int(rng.integers(0, image.shape[1] - w + 1))
        clean = image[y : y + h, x : x + w]
        rainy, _ = add_rain(clean, sampler.light(rng), rng)
        rows.append(rise_stats(to_uint8_truncated(rainy), to_uint8_truncated(clean)))
    return summarise(rows)


def summarise(rows: list[tuple[np.ndarray, float]]) -> dict:
    hist = np.mean([h for h, _ in rows], axis=0)
    psnrs = [p for _, p in rows]
    return {
        "input_psnr": round(float(np.mean(psnrs)), 2),
        "rain_share": round(float(hist.sum()), 4),
        "bins": {f"{lo}-{hi}": round(float(v), 4) for lo, hi, v in zip(EDGES[:-1], EDGES[1:], hist)},
    }


@torch.no_grad()
def error_split(pairs: list[tuple[Path, Path]], run: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """`run`: (1, 3, H, W) rainy in [0, 1] -> clean, as `derain.models.evaluate.evaluate` takes."""
    sse_rain = sse_rest = bias_rain = bias_rest = 0.0
    n_rain = n_rest = 0
    for rainy_path, clean_path in pairs:
        rainy, clean = read_image_uint8(rainy_path), read_image_uint8(clean_path)
        x = torch.from_numpy(rainy).permute(2, 0, 1)[None].float() / 255
        out = to_uint8_truncated(run(x)[0].clamp(0, 1).permute(1, 2, 0).numpy())
        target = luma(clean)
        error = luma(out) - target
        rain = luma(rainy) - target > RAIN_CODES
        sse_rain, sse_rest = sse_rain + float((error[rain] ** 2).sum()), sse_rest + float((error[~rain] ** 2).sum())
        bias_rain, bias_rest = bias_rain + float(error[rain].sum()), bias_rest + float(error[~rain].sum())
        n_rain, n_rest = n_rain + int(rain.sum()), n_rest + int((~rain).sum())
    return {
        "rain_pixels": round(n_rain / (n_rain + n_rest), 4),
        "error_on_rain_pixels": round(sse_rain / (sse_rain + sse_rest), 4),
        "bias_on_rain_pixels": round(bias_rain / max(n_rain, 1), 2),
        "bias_elsewhere": round(bias_rest / max(n_rest, 1), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="a paired set in any layout `derain eval` reads")
    p.add_argument("--photos", type=Path, help="clean photos to compare the synthesiser's light rain on")
    p.add_argument("--draws", type=int, default=150)
    p.add_argument("--faint-fraction", type=float, nargs="+", default=[RainSampler.faint_fraction])
    p.add_argument("--weights", help="also split this model's error on the set ('builtin' for the built-in weights)")
    args = p.parse_args()
    pairs = find_pairs(args.dataset)
    report: dict = {"dataset": str(args.dataset), "images": len(pairs), "rain": dataset_rain(pairs)}
    if args.photos is not None:
        size = read_image_uint8(pairs[0][0]).shape[:2]
        photos = list_images(args.photos)
        report["synthetic"] = {
            f"faint_fraction={f:g}": synthetic_rain(photos, size, args.draws, RainSampler(faint_fraction=f))
            for f in args.faint_fraction
        }
    if args.weights is not None:
        model = load_model(args.weights).eval()
        report["error"] = error_split(pairs, lambda y: model(y)[0])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
