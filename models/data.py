"""Image files and paired data sets: reading, writing, and the layouts people keep them in."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from derain.models.errors import InputError
from derain.models.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# (rainy folder, clean folder) of the common layouts; the authors' layout is handled apart.
PAIRED_LAYOUTS = (("input", "target"), ("rain", "norain"), ("rainy", "gt"), ("data", "gt"))


class ImageError(InputError):
    """An image that cannot be read or written, with the file named."""


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def natural_key(path: Path) -> tuple:
    """Sort 'rain-2' before 'rain-10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def read_image_raw(path: str | Path) -> np.ndarray:
    """The file as OpenCV decodes it (BGR/BGRA/gray, 8 or 16 bit); ImageError if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a readable image (PNG, JPEG, BMP, TIFF or WebP expected)")
    return image


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV image -> (float32 RGB in [0, 1], alpha in [0, 1] or None). Gray becomes RGB."""
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2), None
    if image.shape[2] == 4:
        return image[..., 2::-1].copy(), image[..., 3].copy()
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2), None
    return image[..., ::-1].copy(), None


def read_image(path: str | Path) -> np.ndarray:
    """float32 RGB (H, W, 3) in [0, 1]; gray is replicated, alpha dropped."""
    return split_alpha(read_image_raw(path))[0]


def read_image_uint8(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) as the metrics take it; 16-bit files are rounded to 8 bits."""
    rgb = read_image(path)
    return np.round(rgb * 255.0).astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, rounded (outputs we write; the paper's metrics truncate instead)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write float RGB (and alpha) as an 8-bit PNG, atomically: a failed write leaves no file."""
    path = Path(path)
    bgr = to_uint8(rgb)[..., ::-1]
    if alpha is not None:
        bgr = np.concatenate([bgr, to_uint8(alpha)[..., None]], axis=2)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise ImageError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(rainy, clean) image pairs of a data set folder, in natural order.

    Layouts: `input/` + `target/` (or `rain/` + `norain/`, ...) with the same file names, and
    the authors' `rainy/rain-001.png` with its ground truth `norain-001.png` beside `rainy/`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data set folder")
    for rainy_name, clean_name in PAIRED_LAYOUTS:
        rainy_dir, clean_dir = root / rainy_name, root / clean_name
        if rainy_dir.is_dir() and clean_dir.is_dir():
            pairs = []
            for rainy in list_images(rainy_dir):
                clean = clean_dir / rainy.name
                if not clean.is_file():
                    raise FileNotFoundError(f"{rainy}: no ground truth {clean}")
                pairs.append((rainy, clean))
            if pairs:
                return pairs
    rainy_dir = root / "rainy"
    if rainy_dir.is_dir():
        pairs = []
        for rainy in list_images(rainy_dir):
            if not rainy.name.startswith("rain-"):
                continue
            clean = root / ("no" + rainy.name)
            if not clean.is_file():
                raise FileNotFoundError(f"{rainy}: no ground truth {clean}")
            pairs.append((rainy, clean))
        if pairs:
            return pairs
    layouts = ", ".join(f"{a}/ + {b}/" for a, b in PAIRED_LAYOUTS)
    raise FileNotFoundError(
        f"{root}: no image pairs found; expected {layouts} with the same file names, "
        "or rainy/rain-N.png with norain-N.png beside rainy/"
    )
