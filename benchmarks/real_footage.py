"""Real rainy footage with no ground truth: flicker of the input, the per-frame and the fused output.

    python benchmarks/real_footage.py RAINY OUT [--weights W] [--temporal 3] [--frame N]

RAINY is a video or a folder of frames (e.g. ../shared/data/NTURain_ra1_real/rainy: look, never
train). The frames are derained once (eager FP32 on the CPU); the per-frame output and its
`--temporal K` fusion (the default rule) are scored as `derain eval-video RAINY --temporal K`
scores them: with no clean video, the flow comes from each output itself. Writes OUT/figures.json
and OUT/still.png: a crop of frame N, rainy | per-frame | fused, side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

import derain
from derain.models.metrics import to_uint8_truncated
from derain.models.temporal import fuse_sequence, removed_light
from derain.models.temporal_metrics import derain_sequence, score_sequences
from derain.stream.sequences import read_sequence

CROP = (256, 192)  # width, height of each panel of the still


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def figures(rainy: list[np.ndarray], output: list[np.ndarray]) -> dict[str, float | None]:
    scores = score_sequences(rainy, output)
    return {
        "input_flicker": mean([s.input_flicker for s in scores]), "output_flicker": mean([s.output_flicker for s in scores]),
        "input_warp_error": mean([s.input_warp_error for s in scores]), "output_warp_error": mean([s.output_warp_error for s in scores]),
    }


def still(frames: list[np.ndarray], path: Path) -> None:
    """The centre crop of each frame, side by side, as a small PNG."""
    height, width = frames[0].shape[:2]
    top, left = (height - CROP[1]) // 2, (width - CROP[0]) // 2
    panels = [frame[top:top + CROP[1], left:left + CROP[0]] for frame in frames]
    cv2.imwrite(str(path), np.concatenate(panels, axis=1)[..., ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rainy", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", default=None, help="registry name or checkpoint (default: the built-in weights)")
    parser.add_argument("--temporal", type=int, default=3)
    parser.add_argument("--frame", type=int, default=30, help="the frame the still shows")
    args = parser.parse_args()
    rainy = read_sequence(args.rainy)
    engine = derain.build_engine(derain.load_model(args.weights), engine="eager", device="cpu")
    derained = derain_sequence(engine, rainy)
    removed = [removed_light(frame.astype(np.float32) / 255.0, out) for frame, out in zip(rainy, derained)]
    per_frame = [to_uint8_truncated(frame) for frame in derained]
    fused = [to_uint8_truncated(frame) for frame in fuse_sequence(derained, args.temporal, removed=removed)]
    report = {"rainy": str(args.rainy), "weights": args.weights or "brn-builtin", "frames": len(rainy),
              "temporal": args.temporal, "per_frame": figures(rainy, per_frame), "fused": figures(rainy, fused)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.json").write_text(json.dumps(report, indent=1))
    still([rainy[args.frame], per_frame[args.frame], fused[args.frame]], args.out / "still.png")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
