"""Does a set of weights ever make a frame worse? Rain-free frames, synthetic rainy video, real rain.

Issue 22's three measures, for each `--weights` given side by side (the built-in file and a
candidate, say):

(a) rain-free frames: Y-PSNR of the output against its own input (a model that does no harm
    leaves a clean frame near-untouched; the issue asks for 40 dB) on the held-out photos
    (`python -m derain.models.photos OUT --held-out HELD`: six photos no run since run 9 trained
    on) and on the clean frames of `temporal_data.py`'s clip (camera moves over scikit-image's
    coffee and chelsea, which are training photos: a figure for video, not for unseen scenes);
(b) synthetic rainy video with ground truth: for each sequence the mean Y-PSNR of the input and
    the output, the mean gain and the worst frame's gain (the issue asks for at least +0.5 dB
    per sequence and no frame below -0.2 dB). Sequences: the two scenes of `temporal_data.py`'s
    clip with its rain, and a 320x240 window panning over each of four held-out photos under
    `RainVideo` rain of four kinds (light, dense faint, heavy with haze, long defocused drops);
(c) real rain (`../shared/data/NTURain_ra1_real`, eval data: looked at, never trained on): a crop
    sheet of thin structures (the gate's grille, foliage, a railing, a far fence, tile joints)
    before and after, the high-frequency energy each crop keeps (output / input, luma minus its
    Gaussian blur: rain removal lowers it a little, erasing a grille a lot), and the mean luma
    shift over the frames (a model that darkens every clip shows here).

PSNR/SSIM follow the paper's protocol (`derain eval`): Y of BT.601 studio swing, output
truncated to uint8. Everything runs in FP32 eager on the CPU; a few minutes per weights file.

    python benchmarks/harm.py --weights builtin /path/BRN_R100L.pth --photos HELD [--out DIR]

writes DIR/harm.json, DIR/crops.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from derain.benchmarks.temporal_data import RAIN as CLIP_RAIN
from derain.benchmarks.temporal_data import SPEED as CLIP_SPEED
from derain.benchmarks.temporal_data import clean_frames
from derain.engines import build_engine
from derain.models.data import list_images, read_image, read_image_uint8, to_uint8
from derain.models.hub import load_model
from derain.models.metrics import psnr_y, rgb_to_y, to_uint8_truncated
from derain.models.synth import RainStyle, RainVideo
from derain.models.temporal_metrics import derain_sequence

Run = Callable[[torch.Tensor], torch.Tensor]

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "NTURain_ra1_real"
WINDOW = (320, 240)  # width, height of the panning sequences, as in the street video
PAN = (4.0, 1.5)  # pixels a frame the window moves right and down
# One held-out photo per kind of rain; the photos are those `photos.HELD_OUT` names.
SEQUENCES = (
    ("light", "budgie-backgrounds-canyon-wren", RainStyle(density=0.004, length=14.0, angle=10.0, width=1.2, intensity=0.4)),
    ("dense faint", "mate-backgrounds-Storm", RainStyle(density=0.012, length=24.0, angle=-6.0, width=1.0, intensity=0.22)),
    ("heavy, haze", "lomiri-wallpapers-16.04-seeding_by_Clements_Engelhardt",
     RainStyle(density=0.004, length=32.0, angle=18.0, width=2.0, intensity=0.55, haze=0.12, accumulation=0.25)),
    ("defocused", "plasma-workspace-wallpapers-EveningGlow",
     RainStyle(density=0.0006, length=50.0, angle=4.0, width=5.0, intensity=0.3, blur=2.5)),
)
RAIN_SPEED = 22.0
# Thin structures on frame 1 of the real clip: name, (x, y, width, height) at 640x480.
CROPS = (
    ("gate grille", (340, 100, 128, 96)),
    ("foliage", (470, 110, 128, 96)),
    ("railing", (40, 140, 128, 96)),
    ("far fence", (150, 20, 128, 96)),
    ("tile joints", (440, 280, 128, 96)),
)
REAL_FRAMES = (1, 21, 41)  # the crops come from the first; the luma shift is over all three
DETAIL_SIGMA = 2.0


def engine_run(weights: str) -> Run:
    return build_engine(load_model(weights), "eager", "cpu", "fp32").run


def derain_image(run: Run, rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB in, uint8 RGB out (truncated, as the protocol scores it)."""
    return to_uint8_truncated(derain_sequence(run, [rgb])[0])


def pan(image: np.ndarray, k: int) -> np.ndarray:
    """Frame k of a WINDOW-sized view moving PAN pixels a frame over `image` (sub-pixel, no resize)."""
    matrix = np.float32([[1, 0, -PAN[0] * k], [0, 1, -PAN[1] * k]])
    return cv2.warpAffine(image, matrix, WINDOW, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def rainy_sequence(clean: list[np.ndarray], style: RainStyle, seed: int, speed: float) -> list[np.ndarray]:
    """uint8 rainy frames for float clean frames, as the files of a clip would hold them."""
    field = RainVideo(clean[0].shape[0], clean[0].shape[1], style, speed=speed, seed=seed)
    return [to_uint8(field.frame(frame, k)[0]) for k, frame in enumerate(clean)]


def sequences(photos: Path, frames: int) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """(name, clean uint8 frames, rainy uint8 frames) of every synthetic sequence."""
    clip = clean_frames(frames)
    clip_rainy = rainy_sequence(clip, CLIP_RAIN, 11, CLIP_SPEED)  # as temporal_data.make draws it
    out = [(f"clip {name}", [to_uint8(f) for f in clip[s * frames : (s + 1) * frames]], clip_rainy[s * frames : (s + 1) * frames])
           for s, name in enumerate(("coffee", "chelsea"))]
    for seed, (kind, photo, style) in enumerate(SEQUENCES):
        image = read_image(photos / f"{photo}.png")
        clean = [pan(image, k) for k in range(frames)]
        out.append((f"{kind} ({photo.split('-')[-1].split('_')[0]})", [to_uint8(f) for f in clean], rainy_sequence(clean, style, seed, RAIN_SPEED)))
    return out


def clean_scores(run: Run, images: list[np.ndarray]) -> dict[str, float]:
    """Y-PSNR of each output against its own (rain-free) input: mean and worst."""
    scores = [psnr_y(derain_image(run, im), im) for im in images]
    return {"mean": round(float(np.mean(scores)), 2), "worst": round(float(np.min(scores)), 2)}


def sequence_scores(run: Run, clean: list[np.ndarray], rainy: list[np.ndarray]) -> dict[str, float]:
    derained = [to_uint8_truncated(f) for f in derain_sequence(run, rainy)]
    before = np.array([psnr_y(r, c) for r, c in zip(rainy, clean)])
    after = np.array([psnr_y(d, c) for d, c in zip(derained, clean)])
    return {
        "input_psnr": round(float(before.mean()), 2),
        "output_psnr": round(float(after.mean()), 2),
        "gain": round(float((after - before).mean()), 2),
        "worst_frame_gain": round(float((after - before).min()), 2),
    }


def detail(rgb: np.ndarray) -> float:
    """RMS of luma (8-bit codes) minus its Gaussian blur: the energy of fine structure."""
    y = rgb_to_y(rgb) * 255.0
    return float(np.sqrt(np.mean((y - cv2.GaussianBlur(y, (0, 0), DETAIL_SIGMA)) ** 2)))


def real_scores(run: Run, frames: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    """Luma shift over the frames, detail kept per crop of the first; the derained first frame's crops."""
    outputs = [derain_image(run, f) for f in frames]
    shift = float(np.mean([(rgb_to_y(o) - rgb_to_y(f)).mean() * 255.0 for o, f in zip(outputs, frames)]))
    crops = [outputs[0][y : y + h, x : x + w] for _, (x, y, w, h) in CROPS]
    kept = {name: round(detail(c) / detail(frames[0][y : y + h, x : x + w]), 3) for (name, (x, y, w, h)), c in zip(CROPS, crops)}
    return {"luma_shift": round(shift, 2), "detail_kept": kept}, crops


def crop_sheet(path: Path, columns: list[tuple[str, list[np.ndarray]]], scale: int = 2) -> None:
    """One row per crop, one column per weights (the input first), each crop enlarged `scale` times."""
    rows = []
    for r, (name, _) in enumerate(CROPS):
        cells = []
        for label, crops in columns:
            cell = cv2.resize(crops[r], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            cell = np.ascontiguousarray(cell[..., ::-1])
            cv2.putText(cell, f"{name}: {label}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1, cv2.LINE_AA)
            cells.append(np.pad(cell, ((2, 2), (2, 2), (0, 0)), constant_values=255))
        rows.append(np.hstack(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def measure(weights: list[str], photos: Path, frames: int, real: Path, out: Path) -> dict:
    held = [read_image_uint8(p) for p in list_images(photos)]
    clip = [to_uint8(f) for f in clean_frames(frames)]
    seqs = sequences(photos, frames)
    real_frames = [read_image_uint8(real / "rainy" / f"{k:05d}.jpg") for k in REAL_FRAMES] if real.is_dir() else []
    report: dict = {"photos": str(photos), "frames_per_sequence": frames, "weights": {}}
    columns: list[tuple[str, list[np.ndarray]]] = []
    if real_frames:
        columns.append(("input", [real_frames[0][y : y + h, x : x + w] for _, (x, y, w, h) in CROPS]))
    for spec in weights:
        run = engine_run(spec)
        row: dict = {
            "clean_photos": clean_scores(run, held),
            "clean_video": clean_scores(run, clip),
            "sequences": {name: sequence_scores(run, c, r) for name, c, r in seqs},
        }
        if real_frames:
            row["real"], crops = real_scores(run, real_frames)
            columns.append((Path(spec).stem, crops))
        report["weights"][spec] = row
        print(f"{spec}: done", flush=True)
    if real_frames:
        crop_sheet(out / "crops.png", columns)
        report["crops"] = str(out / "crops.png")
    return report


def table(report: dict) -> str:
    names = list(report["weights"])
    rows = [
        "| measure | " + " | ".join(Path(n).stem for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    cells = lambda f: " | ".join(f(report["weights"][n]) for n in names)
    rows.append("| rain-free held-out photos: PSNR out vs in, mean / worst (dB) | " + cells(lambda w: f"{w['clean_photos']['mean']:.2f} / {w['clean_photos']['worst']:.2f}") + " |")
    rows.append("| rain-free video frames: PSNR out vs in, mean / worst (dB) | " + cells(lambda w: f"{w['clean_video']['mean']:.2f} / {w['clean_video']['worst']:.2f}") + " |")
    for seq in report["weights"][names[0]]["sequences"]:
        first = report["weights"][names[0]]["sequences"][seq]
        rows.append(
            f"| {seq}: input {first['input_psnr']:.2f} dB; output, gain, worst frame | "
            + cells(lambda w, s=seq: f"{w['sequences'][s]['output_psnr']:.2f}, {w['sequences'][s]['gain']:+.2f}, {w['sequences'][s]['worst_frame_gain']:+.2f}")
            + " |"
        )
    if "real" in report["weights"][names[0]]:
        rows.append("| real rain: mean luma shift (codes) | " + cells(lambda w: f"{w['real']['luma_shift']:+.2f}") + " |")
        for crop, _ in CROPS:
            rows.append(f"| real rain: {crop}, detail kept | " + cells(lambda w, c=crop: f"{w['real']['detail_kept'][c]:.3f}") + " |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", default=["builtin"], help="weights names or checkpoint paths, compared side by side")
    p.add_argument("--photos", type=Path, required=True, help="the held-out photos (python -m derain.models.photos OUT --held-out DIR)")
    p.add_argument("--frames", type=int, default=12, help="frames per sequence")
    p.add_argument("--real", type=Path, default=REAL, help="real rainy frames (NTURain ra1); skipped when absent")
    p.add_argument("--out", type=Path, default=Path("harm"), help="folder for harm.json and crops.png")
    args = p.parse_args()
    missing = [s[1] for s in SEQUENCES if not (args.photos / f"{s[1]}.png").is_file()]
    if missing:
        p.error(f"--photos {args.photos}: no {missing[0]}.png; write the held-out photos with "
                "python -m derain.models.photos OUT --held-out DIR")
    report = measure(args.weights, args.photos, args.frames, args.real, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "harm.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
