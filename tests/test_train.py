"""`derain train`: a tiny model learns, resumes where it stopped, and refuses test sets."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from brns import plain_brn
from safetensors.torch import load_file

import derain.models.train as train_mod
from derain.cli import main
from derain.models import derain
from derain.models.checkpoint import load_checkpoint
from derain.models.evaluate import evaluate
from derain.models.train import TrainConfig, TrainError, brn_loss, check_not_test_set, learning_rate, train


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few smooth, textured clean images, the kind of content rain hides."""
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80] / 64.0
    for k in range(4):
        base = np.stack([np.sin(xx * (k + 1) * 3 + c) * 0.3 + 0.5 * yy + 0.2 for c in range(3)], axis=-1)
        blobs = cv2.GaussianBlur(rng.random((64, 80, 3)).astype(np.float32), (0, 0), 3) * 0.5
        image = np.clip(base + blobs - 0.25, 0, 1)
        cv2.imwrite(str(folder / f"img{k}.png"), (image[..., ::-1] * 255).astype(np.uint8))
    return folder


def tiny(clean_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base = {
        "data": str(clean_dir), "out": str(out), "synthetic_rain": True, "epochs": 2, "patch": 32, "batch": 4,
        "stages": 1, "steps_per_epoch": 15, "val_crop": 48, "device": "cpu", "lr": 2e-3, "log_every": 5,
    }
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_checkpoint_loads(clean_dir: Path, tmp_path: Path) -> None:
    result = train(tiny(clean_dir, tmp_path / "run"))
    assert result.step == 30 and len(result.losses) == 30
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) - 0.1
    model, meta = load_checkpoint(result.last)
    assert model.stages == 1 and meta["step"] == "30" and "synthetic rain" in meta["training_data"]
    assert (tmp_path / "run" / "epoch-002.safetensors").is_file() and result.best is not None
    assert [v["epoch"] for v in result.val] == [1, 2] and all(np.isfinite(v["val_psnr"]) for v in result.val)


class Killed(Exception):
    pass


def test_kill_and_resume_continues_the_same_run(clean_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {"epochs": 2, "steps_per_epoch": 4}
    reference = train(tiny(clean_dir, tmp_path / "ref", **cfg))

    real_batch = train_mod.make_batch

    def dies_at_step_6(source: object, c: TrainConfig, step: int) -> tuple:
        if step == 6:
            raise Killed  # like a SIGKILL: nothing after the epoch-1 checkpoint is saved
        return real_batch(source, c, step)

    monkeypatch.setattr(train_mod, "make_batch", dies_at_step_6)
    with pytest.raises(Killed):
        train(tiny(clean_dir, tmp_path / "run", **cfg))
    monkeypatch.setattr(train_mod, "make_batch", real_batch)

    with pytest.raises(TrainError, match="add resume=True to continue it"):
        train(tiny(clean_dir, tmp_path / "run", **cfg))
    resumed = train(tiny(clean_dir, tmp_path / "run", resume=True, **cfg))
    assert resumed.step == 8 and len(resumed.losses) == 4  # steps 5..8, from the epoch-1 checkpoint
    np.testing.assert_allclose(resumed.losses, reference.losses[4:], rtol=1e-4)
    a, _ = load_checkpoint(reference.last)
    b, _ = load_checkpoint(resumed.last)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "resume"] == [4]


def test_resume_must_keep_the_batch_stream(clean_dir: Path, tmp_path: Path) -> None:
    train(tiny(clean_dir, tmp_path / "run", epochs=1, steps_per_epoch=2))
    with pytest.raises(TrainError, match="patch"):
        train(tiny(clean_dir, tmp_path / "run", epochs=2, steps_per_epoch=2, patch=24, resume=True))
    with pytest.raises(TrainError, match="steps_per_epoch was 2 in .*, now 4"):
        train(tiny(clean_dir, tmp_path / "run", epochs=2, steps_per_epoch=4, resume=True))  # would renumber the epoch files
    with pytest.raises(TrainError, match="drop init="):
        train(tiny(clean_dir, tmp_path / "run", epochs=2, steps_per_epoch=2, resume=True, init=str(tmp_path / "run" / "last.safetensors")))
    with pytest.raises(TrainError, match="nothing to resume"):
        train(tiny(clean_dir, tmp_path / "empty", resume=True))
    (tmp_path / "run" / "state.pt").unlink()  # as a kill during the very first save leaves it
    with pytest.raises(TrainError, match="already holds a run"):
        train(tiny(clean_dir, tmp_path / "run", epochs=1, steps_per_epoch=2))


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_training_state_is_one_line(clean_dir: Path, tmp_path: Path, damage: str) -> None:
    train(tiny(clean_dir, tmp_path / "run", epochs=1, steps_per_epoch=2))
    state = tmp_path / "run" / "state.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    else:
        torch.save({"step": torch.tensor(3)}, state)
    with pytest.raises(TrainError, match=r"state\.pt: not a readable training state .*init='.*last\.safetensors'"):
        train(tiny(clean_dir, tmp_path / "run", epochs=2, steps_per_epoch=2, resume=True))


@pytest.mark.parametrize(
    "option",
    [{"epochs": 0}, {"batch": 0}, {"steps_per_epoch": 0}, {"patch": 4}, {"val_crop": 0}, {"stages": 0}, {"lr": -1.0},
     {"heavy_fraction": 5.0}, {"val": "/nonexistent/val"}],
)
def test_options_that_cannot_train_are_refused_before_any_work(clean_dir: Path, tmp_path: Path, option: dict) -> None:
    with pytest.raises(TrainError, match=f"{next(iter(option))}="):
        train(tiny(clean_dir, tmp_path / "run", **option))
    assert not (tmp_path / "run").exists()


def test_a_stopped_run_exits_as_the_signal_says(clean_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real_batch = train_mod.make_batch

    def ctrl_c_at_step_3(source: object, c: TrainConfig, step: int) -> tuple:
        if step == 3:
            signal.raise_signal(signal.SIGINT)  # caught by train: it saves and stops after this step
        return real_batch(source, c, step)

    monkeypatch.setattr(train_mod, "make_batch", ctrl_c_at_step_3)
    args = ["train", "--data", str(clean_dir), "--synthetic-rain", "--out", str(tmp_path / "run"), "--epochs", "1",
            "--steps-per-epoch", "20", "--patch", "32", "--batch", "2", "--stages", "1", "--val-crop", "48", "--device", "cpu"]
    assert main(args) == 130
    assert "stopped at step 4; continue with --resume" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[1]["step"] == "4"


def test_paper_loss_and_schedule() -> None:
    clean = torch.rand(2, 3, 24, 24)
    rain = torch.rand(2, 3, 24, 24) * 0.3
    # Perfect outputs at every one of T stages: -(1 + 0.5 T) for each branch, weighted 0.55/0.45.
    loss = brn_loss([clean] * 4, [rain] * 4, clean, rain)
    assert float(loss) == pytest.approx(-(1 + 0.5 * 4), abs=1e-5)
    rates = [learning_rate(1e-3, s, 100) for s in (0, 29, 30, 49, 50, 79, 80, 99)]
    assert rates == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4, 4e-5, 4e-5, 8e-6, 8e-6])


def test_l1_term_sees_a_colour_offset() -> None:
    clean = torch.rand(2, 3, 32, 32) * 0.5
    rain = torch.rand(2, 3, 32, 32) * 0.3
    shifted = clean + torch.tensor([0.0, 0.05, 0.0]).view(1, 3, 1, 1)
    paper = brn_loss([shifted] * 4, [rain] * 4, clean, rain)
    with_l1 = brn_loss([shifted] * 4, [rain] * 4, clean, rain, l1=2.0)
    # Only the final stage counts: mean |offset| over the three channels is 0.05 / 3.
    assert float(with_l1 - paper) == pytest.approx(2.0 * 0.05 / 3, rel=1e-4)
    assert float(brn_loss([clean] * 4, [rain] * 4, clean, rain, l1=2.0)) == pytest.approx(-(1 + 0.5 * 4), abs=1e-5)


@pytest.mark.parametrize("name", ["Rain100L", "rain100H/input", "Rain12"])
def test_refuses_test_sets(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    with pytest.raises(TrainError, match="test set"):
        check_not_test_set(folder)
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_refuses_shared_test_data(tmp_path: Path) -> None:
    shared = train_mod.SHARED_DATA
    if not shared.is_dir():
        pytest.skip("no ../shared/data here")
    with pytest.raises(TrainError, match="test set"):
        check_not_test_set(shared / "NTURain_ra1_real")


def clean_patches_before_and_after(cfg: TrainConfig, **change: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch's clean patches under `cfg`, and again with `change` made to it."""
    batches = []
    for settings in ({}, change):
        for name, value in settings.items():
            setattr(cfg, name, value)
        source, _ = train_mod.build_sources(cfg)
        batches.append(train_mod.make_batch(source, cfg, 0)[1])
    return batches[0], batches[1]


def test_procedural_share_replaces_photo_patches(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(2):
        cv2.imwrite(str(flat / f"grey{k}.png"), np.full((80, 80, 3), 128, np.uint8))
    cfg = TrainConfig(data=str(flat), out=str(tmp_path / "run"), synthetic_rain=True, patch=32, batch=32, heavy_fraction=0.0)
    photos, generated = clean_patches_before_and_after(cfg, procedural=1.0)
    # The grey photos stay grey under exposure jitter; generated patches are colourful.
    photo_chroma = (photos.amax(dim=1) - photos.amin(dim=1)).max()
    generated_chroma = (generated.amax(dim=1) - generated.amin(dim=1)).mean(dim=(1, 2))
    assert photo_chroma < 1e-6 and (generated_chroma > 0.05).all()


def test_identity_patches_are_dry_and_their_own_target(clean_dir: Path, tmp_path: Path) -> None:
    cfg = tiny(clean_dir, tmp_path / "run", identity=1.0, structures=1.0, batch=16)
    source, _ = train_mod.build_sources(cfg)
    rainy, clean, rain = train_mod.make_batch(source, cfg, 0)
    assert torch.equal(rainy, clean) and not rain.any()
    cfg.identity = 0.0
    source, _ = train_mod.build_sources(cfg)
    rainy, clean, rain = train_mod.make_batch(source, cfg, 0)
    assert (rain.abs().amax(dim=(1, 2, 3)) > 0.05).all()


def test_structure_share_draws_thin_lines_on_the_clean_patches(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    cv2.imwrite(str(flat / "grey.png"), np.full((80, 80, 3), 128, np.uint8))
    cfg = TrainConfig(data=str(flat), out=str(tmp_path / "run"), synthetic_rain=True, patch=32, batch=16, identity=1.0)
    plain, drawn = clean_patches_before_and_after(cfg, structures=1.0)
    spread = lambda batch: (batch.amax(dim=(2, 3)) - batch.amin(dim=(2, 3))).amax(dim=1)
    assert (spread(plain) < 1e-6).all() and (spread(drawn) > 0.02).float().mean() > 0.9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"procedural": 1.5}, "from 0 to 1"),
        ({"procedural": 0.3, "synthetic_rain": False}, "add synthetic_rain=True"),
        ({"identity": -0.1}, "identity=-0.1: give the share"),
        ({"structures": 0.5, "synthetic_rain": False}, "`structures`: .* add synthetic_rain=True"),
    ],
)
def test_procedural_option_is_checked(clean_dir: Path, tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(TrainError, match=message):
        train_mod.build_sources(tiny(clean_dir, tmp_path / "run", **extra))


def test_bf16_autocast_on_the_cpu(clean_dir: Path, tmp_path: Path) -> None:
    result = train(tiny(clean_dir, tmp_path / "run", amp="on"))
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) - 0.1
    # Weights stay FP32 (autocast only computes in BF16), saved as FP32 and loadable.
    tensors = load_file(result.last)
    assert tensors and all(t.dtype == torch.float32 for t in tensors.values())
    load_checkpoint(result.last)
    with pytest.raises(TrainError, match="amp='fast'"):
        train(tiny(clean_dir, tmp_path / "bad", amp="fast"))


def test_resume_refuses_other_data(clean_dir: Path, tmp_path: Path) -> None:
    """A resumed run must see the batches it would have seen: same sampler settings, same recipe."""
    run = tmp_path / "run"
    train(tiny(clean_dir, run, epochs=1, steps_per_epoch=3))
    with pytest.raises(TrainError, match="heavy_fraction was 0.25"):
        train(tiny(clean_dir, run, epochs=2, steps_per_epoch=3, resume=True, heavy_fraction=0.5))
    state = torch.load(run / "state.pt", weights_only=True)
    del state["recipe"]  # as saved before the recipe was recorded
    torch.save(state, run / "state.pt")
    with pytest.raises(TrainError, match="older synthetic-rain recipe.*init="):
        train(tiny(clean_dir, run, epochs=2, steps_per_epoch=3, resume=True))


def test_train_leaves_the_callers_config_as_it_was(clean_dir: Path, tmp_path: Path) -> None:
    cfg = tiny(clean_dir, tmp_path / "run", epochs=1, steps_per_epoch=2, stages=None)
    given = dataclasses.asdict(cfg)
    train(cfg)
    assert dataclasses.asdict(cfg) == given
    cfg.resume = True
    given = dataclasses.asdict(cfg)
    train(cfg)
    assert dataclasses.asdict(cfg) == given


def test_cli_defaults_are_train_configs() -> None:
    """The CLI passes on only the options given: every default is TrainConfig's, written once."""
    from derain.cli import build_parser

    args = vars(build_parser().parse_args(["train", "--data", "d", "--out", "o"]))
    assert set(args) - {"func", "command", "debug"} == {"data", "out"}
    given = vars(build_parser().parse_args(["train", "--data", "d", "--out", "o", "--epochs", "7", "--synthetic-rain"]))
    assert {k: given[k] for k in ("epochs", "synthetic_rain")} == {"epochs": 7, "synthetic_rain": True}


def test_validation_scores_as_eval_does(tmp_path: Path) -> None:
    """One protocol: a 16-bit rainy file (between uint8 codes) scores the same in both."""
    rng = np.random.default_rng(3)
    clean = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    rainy = np.clip(clean.astype(np.int32) * 257 + rng.integers(-9000, 9000, clean.shape), 0, 65535).astype(np.uint16)
    for folder, image in (("input", rainy), ("target", clean)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), image[..., ::-1])
    pairs = [(tmp_path / "input" / "a.png", tmp_path / "target" / "a.png")]
    model = plain_brn(stages=1)
    report = evaluate(lambda batch: derain(model, batch), pairs)
    val = train_mod.validate(model, train_mod.PairedSource(pairs), torch.device("cpu"), crop=64)
    assert val == {"val_psnr": report.mean("psnr"), "val_ssim": report.mean("ssim"), "val_input_psnr": report.mean("input_psnr")}
