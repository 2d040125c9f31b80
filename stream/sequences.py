"""Frame sequences for video evaluation: a video file or a folder of images, as uint8 RGB frames.

The whole sequence is held in memory (about 6 MB a 1080p frame): evaluation clips are short,
and their lengths and sizes must be checked against each other before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from derain.models.data import list_images, read_image_uint8
from derain.models.errors import InputError
from derain.stream.color import to_rgb
from derain.stream.decode import frames, open_source


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as uint8 RGB (H, W, 3), converted as the pipeline converts."""
    source = open_source(path)
    try:
        result = []
        for frame in frames(source):
            rgb = to_rgb([torch.from_numpy(p.copy())[None] for p in frame.planes], source.color)
            result.append((rgb[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8))
        return result
    finally:
        source.close()


def read_sequence(path: str | Path) -> list[np.ndarray]:
    """A video file, or a folder of PNG/JPEG/... frames in name order, as uint8 RGB frames of one size."""
    path = Path(path)
    if path.is_dir():
        names = list_images(path)
        if not names:
            raise InputError(f"{path}: folder holds no image frames (PNG or JPEG expected)")
        sequence = [read_image_uint8(name) for name in names]
        for name, frame in zip(names, sequence):
            if frame.shape != sequence[0].shape:
                raise InputError(f"{name}: is {frame.shape[1]}x{frame.shape[0]}, the first frame "
                                 f"{sequence[0].shape[1]}x{sequence[0].shape[0]}; give frames of one size")
        return sequence
    sequence = read_video(path)
    if not sequence:
        raise InputError(f"{path}: holds no video frames")
    return sequence


def check_pair(rainy: list[np.ndarray], clean: list[np.ndarray], rainy_path: Path, clean_path: Path) -> None:
    """Refuse a ground truth whose length or frame size differs from the rainy sequence's."""
    if len(rainy) != len(clean):
        raise InputError(f"{clean_path}: has {len(clean)} frames, {rainy_path} {len(rainy)}; give sequences of the same length")
    if rainy[0].shape != clean[0].shape:
        (h, w), (ch, cw) = rainy[0].shape[:2], clean[0].shape[:2]
        raise InputError(f"{clean_path}: frames are {cw}x{ch}, {rainy_path}'s {w}x{h}; give sequences of the same size")
