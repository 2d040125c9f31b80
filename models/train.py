"""`derain train`: the paper's training recipe for the BRN family, resumable, on paired or synthetic data.

Recipe (Shang et al. 2020): 100x100 patches, batch 12, Adam at 1e-3, learning rate x0.2 at 30%,
50% and 80% of the run, loss = 0.55 * image loss + 0.45 * rain loss, each the negative of
SSIM(final stage) + 0.5 * sum over stages of SSIM(stage); the rain branch is scored against
the true rain layer (rainy - clean). `l1=W` adds W x the mean absolute error of the final
image (off by default): SSIM barely sees a uniform colour or brightness offset, which a small
training set otherwise leaves in the output. `procedural=F` draws a share F of synthetic-rain
patches from generated dead-leaves images (discs and thin sticks), for colours a few photos
do not cover and for streak-like structure that is not rain. `structures=F` draws thin clean
structure (grilles, fences, text, grass blades: `synth.fine_structure`) over a share F of
patches, and `identity=F` leaves a share F of patches without rain, their target the input
itself: together they teach the network that thin lines and fine texture are scene, and that a
frame with no rain is to be left as it is. Photo
patches are turned, channel-shuffled and, half the time, re-exposed (gain and gamma; one time in
eight dark, as at night) before the rain goes on; the rain is added or Screen-blended
(`models/synth.py`). `amp='on'`
trains in BF16 autocast on the CPU (about twice as fast where the CPU has BF16 units);
CUDA uses FP16 autocast by default.

Batches are drawn from a generator seeded by (seed, step), so a run resumed after a kill sees
the same patches, in the same order, as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from derain.engines.base import EngineError, select_device
from derain.models.brn import BRN, derain
from derain.models.checkpoint import load_checkpoint, save_checkpoint
from derain.models.data import find_pairs, list_images, read_image, to_uint8
from derain.models.errors import DerainError
from derain.models.evaluate import EvalReport, score_image
from derain.models.files import atomic_path
from derain.models.hub import load_model
from derain.models.metrics import ssim
from derain.models.synth import RainSampler, add_rain, dead_leaves, fine_structure

IMAGE_WEIGHT = 0.55
RAIN_WEIGHT = 0.45
STAGE_WEIGHT = 0.5
MILESTONES = (0.3, 0.5, 0.8)
GAMMA = 0.2

# Published test sets: training on them (or next to them) would make every reported number a lie.
TEST_SET_NAMES = ("rain100l", "rain100h", "rain12", "test100", "test1200", "test2800")
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

STATE_FILE = "state.pt"
LAST_FILE = "last.safetensors"
MIN_PATCH = 16  # the smallest patch or validation crop SSIM's 11x11 window scores well
BEST_FILE = "best.safetensors"
LOG_FILE = "log.jsonl"
# What a (seed, step) batch of synthetic rain holds: bump it when the synthesiser or the
# augmentation changes, so that a run resumes only on the data it started with.
# 2: dead-leaves patches, exposure jitter, Screen blend. 3: sticks among the dead leaves.
# 4: most light rain dense and faint (RainSampler.faint_fraction). 5: defocused drops, night
# exposures, --structures and --identity.
DATA_RECIPE = 5
AMP_MODES = ("auto", "on", "off")


class TrainError(DerainError):
    """A training run that cannot start or continue, with what to do about it."""


@dataclass
class TrainConfig:
    data: str
    out: str
    synthetic_rain: bool = False
    epochs: int = 100
    patch: int = 100
    batch: int = 12
    lr: float = 1e-3
    resume: bool = False
    init: str | None = None
    val: str | None = None
    variant: str | None = None
    stages: int | None = None
    device: str | None = None
    steps_per_epoch: int | None = None
    heavy_fraction: float = 0.25
    val_crop: int = 256
    seed: int = 0
    l1: float = 0.0
    procedural: float = 0.0
    structures: float = 0.0
    identity: float = 0.0
    amp: str = "auto"
    log_every: int = 10


@dataclass
class TrainResult:
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    last: Path | None = None
    best: Path | None = None
    stopped_by: int | None = None  # the signal that stopped the run early


def check_config(cfg: TrainConfig) -> None:
    """Refuse option values that cannot train, before any data is read or file written."""
    if cfg.epochs < 1 or cfg.batch < 1 or (cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1):
        raise TrainError(f"epochs={cfg.epochs} batch={cfg.batch} steps_per_epoch={cfg.steps_per_epoch}: each must be at least 1")
    if cfg.patch < MIN_PATCH or cfg.val_crop < MIN_PATCH:
        raise TrainError(f"patch={cfg.patch} val_crop={cfg.val_crop}: each must be at least {MIN_PATCH} pixels (the SSIM window is 11)")
    if cfg.stages is not None and cfg.stages < 1:
        raise TrainError(f"stages={cfg.stages}: must be at least 1")
    if not cfg.lr > 0 or cfg.l1 < 0:
        raise TrainError(f"lr={cfg.lr:g} l1={cfg.l1:g}: the learning rate must be above 0 and the L1 weight at least 0")
    if not 0.0 <= cfg.heavy_fraction <= 1.0:
        raise TrainError(f"heavy_fraction={cfg.heavy_fraction:g}: give the share of heavy rain, from 0 to 1")
    if cfg.resume and cfg.init is not None:
        raise TrainError(f"`resume` continues from {cfg.out}/{LAST_FILE}; drop init={str(cfg.init)!r} (it was used when the run started)")


def check_not_test_set(path: str | Path) -> None:
    """Raise TrainError for a folder that is, or lies inside, a known test set."""
    resolved = Path(path).resolve()
    hit = next((part for part in resolved.parts if part.lower() in TEST_SET_NAMES), None)
    if hit is None and SHARED_DATA.is_dir() and resolved.is_relative_to(SHARED_DATA.resolve()):
        hit = str(SHARED_DATA)
    if hit is not None:
        raise TrainError(
            f"{path}: looks like a test set ({hit}); training on it would make its scores meaningless. "
            "Train on a training set (e.g. RainTrainL) or on clean images with synthetic_rain=True, "
            "and keep test sets for `derain eval`."
        )


# Data ---------------------------------------------------------------------------------------


def _random_crop(images: list[np.ndarray], patch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random patch (with a random horizontal flip) from aligned images."""
    height, width = images[0].shape[:2]
    if height < patch or width < patch:
        scale = patch / min(height, width)
        size = (max(patch, round(width * scale)), max(patch, round(height * scale)))
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]
        height, width = images[0].shape[:2]
    top = int(rng.integers(0, height - patch + 1))
    left = int(rng.integers(0, width - patch + 1))
    flip = rng.random() < 0.5
    out = []
    for im in images:
        crop = im[top : top + patch, left : left + patch]
        out.append(np.ascontiguousarray(crop[:, ::-1] if flip else crop))
    return out


class PairedSource:
    """Rainy/clean pairs held in memory; the rain target is rainy - clean."""

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self.pairs = [(read_image(a), read_image(b)) for a, b in pairs]
        for (a, b), (pa, _) in zip(self.pairs, pairs):
            if a.shape != b.shape:
                raise TrainError(f"{pa}: size differs from its ground truth; fix the pair or remove it")
        self.pixels = sum(a.shape[0] * a.shape[1] for a, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rainy, clean = _random_crop(list(self.pairs[int(rng.integers(len(self.pairs)))]), patch, rng)
        return rainy, clean, rainy - clean

    def full(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs[index]


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the time, a random exposure (gain 0.7-1.4, highlights clip) and gamma (0.7-1.4);
    one time in eight, night (gain 0.15-0.5, gamma 1.3-2.2: dark, crushed shadows).

    Clipped highlights stand in for the white sky and steam that a few dozen photos rarely show,
    the dark exposures for the night scenes that none of them is.
    """
    draw = rng.random()
    if draw < 0.5:
        return image
    if draw < 0.875:
        gain, gamma = rng.uniform(0.7, 1.4), math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    else:
        gain, gamma = rng.uniform(0.15, 0.5), rng.uniform(1.3, 2.2)
    return np.clip(np.power(image, np.float32(gamma)) * np.float32(gain), 0.0, 1.0)


class SyntheticSource:
    """Clean images held in memory (and, for a `procedural` share of patches, dead-leaves
    images made on the spot); a `structures` share gets thin structure drawn over it, an
    `identity` share stays dry (target = input, no rain); rain is synthesised per patch."""

    def __init__(
        self, paths: list[Path], sampler: RainSampler, procedural: float = 0.0, structures: float = 0.0, identity: float = 0.0
    ) -> None:
        self.images = [read_image(p) for p in paths]
        self.sampler = sampler
        self.procedural = procedural
        self.structures = structures
        self.identity = identity
        self.pixels = sum(im.shape[0] * im.shape[1] for im in self.images)
        # Pick images in proportion to their area, so every pixel is equally likely.
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        crop = dead_leaves(patch, patch, rng) if rng.random() < self.procedural else self._photo_patch(patch, rng)
        if rng.random() < self.structures:
            crop = fine_structure(crop, rng)
        if rng.random() < self.identity:
            return crop, crop, np.zeros_like(crop)
        rainy, rain = add_rain(crop, self.sampler(rng), rng)
        return rainy, crop, rain

    def _photo_patch(self, patch: int, rng: np.random.Generator) -> np.ndarray:
        image = self.images[int(rng.choice(len(self.images), p=self.weights))]
        # Random zoom: the few bundled images then yield streaks over many scene scales.
        zoom = float(rng.uniform(0.5, 1.0))
        side = min(round(patch / zoom), *image.shape[:2])
        (crop,) = _random_crop([image], side, rng)
        if side != patch:
            crop = cv2.resize(crop, (patch, patch), interpolation=cv2.INTER_AREA)
        # Rain is added after these, so turning the scene, shuffling its colour channels and
        # changing its exposure multiply the backgrounds without changing what rain looks like.
        crop = np.ascontiguousarray(np.rot90(crop, int(rng.integers(4)))[..., rng.permutation(3)])
        return _photometric(crop, rng)

    def full(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        # Light rain from a fixed seed per image: the same validation set every epoch and run.
        clean = self.images[index]
        rng = np.random.default_rng([index, 7])
        rainy, _ = add_rain(clean, self.sampler.light(rng), rng)
        return rainy, clean


Source = PairedSource | SyntheticSource


def _synthetic_paths(folder: Path) -> list[Path]:
    paths = list_images(folder)
    if not paths:
        raise TrainError(f"{folder}: no images found; `synthetic_rain` needs a folder of clean images")
    return paths


def build_sources(cfg: TrainConfig) -> tuple[Source, Source | None]:
    """Training and validation sources; without `val` a tenth of the data is held out."""
    for option, share in (("procedural", cfg.procedural), ("structures", cfg.structures), ("identity", cfg.identity)):
        if not 0.0 <= share <= 1.0:
            raise TrainError(f"{option}={share:g}: give the share of patches, from 0 to 1")
        if share and not cfg.synthetic_rain:
            raise TrainError(f"`{option}`: it shapes the patches that synthetic rain falls on; add synthetic_rain=True")
    sampler = RainSampler(heavy_fraction=cfg.heavy_fraction)
    data = Path(cfg.data)
    if not data.is_dir():
        raise TrainError(f"{data}: no such data folder")
    if cfg.val and not Path(cfg.val).is_dir():
        raise TrainError(f"val={str(cfg.val)!r}: no such folder; give a folder of validation images or drop `val`")
    perm_rng = np.random.default_rng([cfg.seed, 1])
    if cfg.synthetic_rain:
        items: list = _synthetic_paths(data)
        make: Callable = partial(SyntheticSource, sampler=sampler, procedural=cfg.procedural, structures=cfg.structures, identity=cfg.identity)
        val_items = _synthetic_paths(Path(cfg.val)) if cfg.val else None
    else:
        try:
            items = find_pairs(data)
            val_items = find_pairs(cfg.val) if cfg.val else None
        except FileNotFoundError as err:
            raise TrainError(f"{err}; for a folder of clean images add synthetic_rain=True") from None
        make = PairedSource
    if val_items is None and len(items) >= 2:
        order = perm_rng.permutation(len(items))
        held = max(1, len(items) // 10)
        val_items = [items[i] for i in sorted(order[:held])]
        items = [items[i] for i in sorted(order[held:])]
    return make(items), (make(val_items) if val_items else None)


def make_batch(source: Source, cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rainy, clean, rain) batches for a global step; the same step always gives the same batch."""
    rng = np.random.default_rng([cfg.seed, step])
    samples = [source.sample(cfg.patch, rng) for _ in range(cfg.batch)]
    return tuple(torch.from_numpy(np.stack(s)).permute(0, 3, 1, 2).contiguous() for s in zip(*samples))  # type: ignore[return-value]


# Loss, schedule, validation -----------------------------------------------------------------


def brn_loss(
    xs: list[torch.Tensor], rs: list[torch.Tensor], clean: torch.Tensor, rain: torch.Tensor, l1: float = 0.0
) -> torch.Tensor:
    """The paper's loss: 0.55 * image term + 0.45 * rain term, each -(SSIM_T + 0.5 * sum_t SSIM_t),
    plus `l1` x mean |x_T - clean|."""

    def term(outs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        scores = [ssim(o.float(), target) for o in outs]
        return -(scores[-1] + STAGE_WEIGHT * sum(scores))

    loss = IMAGE_WEIGHT * term(xs, clean) + RAIN_WEIGHT * term(rs, rain)
    if l1:
        loss = loss + l1 * (xs[-1].float() - clean).abs().mean()
    return loss


def train_step(
    model: BRN,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    autocast: torch.dtype | None,
    l1: float = 0.0,
) -> torch.Tensor:
    """One optimiser step on a (rainy, clean, rain) batch, the forward pass autocast to `autocast`
    (None: FP32); returns the loss."""
    rainy, clean, rain = batch
    with torch.autocast(rainy.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        xs, rs = model.forward_stages(rainy)
    loss = brn_loss(xs, rs, clean, rain, l1)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def learning_rate(base: float, step: int, total: int) -> float:
    """Step decay: x0.2 at 30%, 50% and 80% of the run."""
    passed = sum(step >= round(f * total) for f in MILESTONES)
    return base * GAMMA**passed


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top : top + size, left : left + size]


@torch.no_grad()
def validate(model: BRN, source: Source, device: torch.device, crop: int) -> dict[str, float]:
    """Mean Y-PSNR / Y-SSIM of the output, and Y-PSNR of the input, over held-out images
    centre-cropped to `crop`, scored as `derain eval` scores them (`evaluate.score_image`)."""
    model.eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        return derain(model, batch.to(device))

    scores = []
    for index in range(len(source)):
        rainy, clean = (_center_crop(im, crop) for im in source.full(index))
        scores.append(score_image(run, rainy, to_uint8(clean)))
    model.train()
    report = EvalReport("validation", "", scores)
    # The rainy input's score says whether the model helps at all.
    return {"val_psnr": report.mean("psnr"), "val_ssim": report.mean("ssim"), "val_input_psnr": report.mean("input_psnr")}


# The run ------------------------------------------------------------------------------------


def _pick_device(name: str | None) -> torch.device:
    try:
        return select_device(name)
    except EngineError as err:
        raise TrainError(str(err)) from None


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for `--amp`: FP16 on CUDA (auto or on), BF16 on the CPU (on only), or None for FP32."""
    if mode not in AMP_MODES:
        raise TrainError(f"amp={mode!r}: choose auto, on or off")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _initial_model(cfg: TrainConfig) -> BRN:
    if cfg.init is None:
        torch.manual_seed(cfg.seed)  # the seed fixes the initial weights as well as the batches
        return BRN(cfg.variant or "brn", cfg.stages or 4)
    model = load_model(cfg.init)
    if (cfg.variant and cfg.variant != model.variant) or (cfg.stages and cfg.stages != model.stages):
        raise TrainError(
            f"init={str(cfg.init)!r} is {model.variant} with {model.stages} stages; drop `variant`/`stages` "
            "or give matching values"
        )
    return model


def _atomic_torch_save(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class _Log:
    """JSON lines, one object per event, flushed as written so `tail -f` follows the run."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, event: str, **fields: object) -> None:
        self.file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Run (or resume) training as configured; returns where it stopped and what it wrote.

    `cfg` is left as given: what a resumed run or `init` settles (variant, stages, ...) goes
    into a copy, which the run's log and state record.

    Raises:
        TrainError: options that cannot train, a test set as data, or a run that cannot resume.
    """
    console = console or Console(stderr=True, markup=False)
    cfg = dataclasses.replace(cfg)
    check_config(cfg)
    check_not_test_set(cfg.data)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise TrainError(f"out={str(out)!r}: is a file; give a folder for the run")
    state_path = out / STATE_FILE
    state = None
    if cfg.resume:
        if not state_path.is_file():
            raise TrainError(f"{out}: nothing to resume (no {STATE_FILE}); run without `resume` to start")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            saved = json.loads(state["config"])
        except Exception as err:  # noqa: BLE001 - a truncated zip, a foreign pickle, a dict without our keys
            raise TrainError(
                f"{state_path}: not a readable training state ({type(err).__name__}); "
                f"start a new run from its weights with init={str(out / LAST_FILE)!r}"
            ) from None
        cfg.init = saved.get("init")  # the run's own start, for the checkpoints' description
        # The model and the batch stream must match the run being resumed; the rest may change.
        if cfg.synthetic_rain and state.get("recipe", 1) != DATA_RECIPE:
            raise TrainError(
                f"`resume`: {out} was started on an older synthetic-rain recipe; "
                f"start a new run from its weights with init={str(out / LAST_FILE)!r}"
            )
        keys = (
            "variant", "stages", "patch", "batch", "seed", "synthetic_rain", "procedural", "structures", "identity",
            "heavy_fraction", "steps_per_epoch",
        )
        for key in keys:
            # Runs saved before a key existed ran with its default.
            was = saved.get(key, TrainConfig.__dataclass_fields__[key].default)
            if key in ("variant", "stages", "steps_per_epoch") and getattr(cfg, key) is None:
                setattr(cfg, key, was)
            elif getattr(cfg, key) != was:
                raise TrainError(f"`resume`: {key} was {was!r} in {out}, now {getattr(cfg, key)!r}; keep it the same")
    elif state_path.exists() or any(out.glob("*.safetensors")):
        raise TrainError(f"{out} already holds a run; add resume=True to continue it or pick another `out`")

    device = _pick_device(cfg.device)
    autocast = amp_dtype(cfg.amp, device)  # a bad --amp is refused before the data is read
    train_src, val_src = build_sources(cfg)
    if state is None:
        model = _initial_model(cfg)
        cfg.variant, cfg.stages = model.variant, model.stages
    else:
        model, _ = load_checkpoint(out / LAST_FILE)
    # NHWC convolutions train faster on the CPU (benchmarks/train_step.py: x1.15 in FP32, x1.25
    # more in BF16 on AMX) and feed tensor cores on CUDA.
    model.to(device, memory_format=torch.channels_last).train()
    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(train_src.pixels / (cfg.patch**2 * cfg.batch)))
    total = cfg.epochs * steps_per_epoch

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # BF16 keeps FP32's range: only FP16 needs its gradients scaled.
    amp = autocast == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step, best = 0, -math.inf
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, best = int(state["step"]), float(state["best_psnr"])

    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / LOG_FILE)
    training_data = (
        f"synthetic rain on {len(train_src)} clean images from {cfg.data}"
        + (f" and on dead-leaves images ({cfg.procedural:.0%} of patches)" if cfg.procedural else "")
        + (f", thin structure drawn over {cfg.structures:.0%}" if cfg.structures else "")
        + (f", {cfg.identity:.0%} of patches left dry (target = input)" if cfg.identity else "")
        if cfg.synthetic_rain
        else f"{len(train_src)} rainy/clean pairs from {cfg.data}"
    ) + (f", fine-tuned from {cfg.init}" if cfg.init else "")
    log("start" if state is None else "resume", step=step, total=total, steps_per_epoch=steps_per_epoch,
        device=str(device), train_items=len(train_src), val_items=len(val_src) if val_src else 0, config=asdict(cfg))
    result = TrainResult(step=step, epoch=step // steps_per_epoch)

    def save(epoch_done: bool, metrics: dict[str, float]) -> None:
        nonlocal best
        extra = {"step": str(step), "epoch": str(step // steps_per_epoch), **{k: f"{v:.4f}" for k, v in metrics.items()}}
        result.last = save_checkpoint(model, out / LAST_FILE, training_data=training_data, extra=extra)
        if epoch_done:
            save_checkpoint(model, out / f"epoch-{step // steps_per_epoch:03d}.safetensors", training_data=training_data, extra=extra)
            if metrics.get("val_psnr", -math.inf) > best:
                best = metrics["val_psnr"]
                result.best = save_checkpoint(model, out / BEST_FILE, training_data=training_data, extra=extra)
        # Training state goes last: a kill between the two writes resumes from the older state
        # with newer weights at worst, never with a state that points past the weights.
        _atomic_torch_save(
            {
                "step": step,
                "best_psnr": best,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if amp else {},
                "config": json.dumps(asdict(cfg)),
                "recipe": DATA_RECIPE,
            },
            state_path,
        )

    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    handlers = {}
    progress = Progress(
        TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.1e}"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    window: list[float] = []
    try:
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        with progress:
            task = progress.add_task("train", total=total, completed=step, epoch=step // steps_per_epoch + 1, loss=0.0, lr=cfg.lr)
            while step < total and stop["signal"] is None:
                lr = learning_rate(cfg.lr, step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                rainy, clean, rain = (t.to(device, non_blocking=True) for t in make_batch(train_src, cfg, step))
                rainy = rainy.contiguous(memory_format=torch.channels_last)
                loss = train_step(model, optimizer, scaler, (rainy, clean, rain), autocast, cfg.l1)
                step += 1
                value = float(loss.detach())
                result.losses.append(value)
                window.append(value)
                progress.update(task, advance=1, loss=value, lr=lr, epoch=(step - 1) // steps_per_epoch + 1)
                if step % cfg.log_every == 0:
                    log("step", step=step, epoch=(step - 1) // steps_per_epoch + 1, loss=float(np.mean(window)), lr=lr)
                    if not console.is_terminal:
                        console.print(f"step {step}/{total} loss {np.mean(window):.4f} lr {lr:.1e}")
                    window.clear()
                if step % steps_per_epoch == 0:
                    metrics = validate(model, val_src, device, cfg.val_crop) if val_src else {}
                    save(True, metrics)
                    epoch = step // steps_per_epoch
                    result.val.append({"epoch": epoch, **metrics})
                    log("epoch", step=step, epoch=epoch, **metrics)
                    shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    console.print(f"epoch {epoch}/{cfg.epochs} step {step} {shown} -> {out / f'epoch-{epoch:03d}.safetensors'}", soft_wrap=True)
        if step % steps_per_epoch:
            save(False, {})
        if stop["signal"] is not None:
            result.stopped_by = int(stop["signal"])
            log("stopped", step=step, signal=int(stop["signal"]))
        else:
            log("done", step=step, best_val_psnr=best if best > -math.inf else None)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        log.close()
    result.step, result.epoch = step, step // steps_per_epoch
    result.last = out / LAST_FILE
    result.best = out / BEST_FILE if (out / BEST_FILE).is_file() else None
    return result
