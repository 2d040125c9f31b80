"""`derain image` and `derain eval` through the command line, on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import OFFICIAL, RAIN100L, needs_official, needs_rain100l

from derain.cli import main
from derain.models import derain, load_checkpoint
from derain.models.data import find_pairs, read_image


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def rng_image(h: int, w: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    high = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def test_image_outputs_equal_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = write(tmp_path / "in" / "street.png", rng_image(15, 22))
    out = tmp_path / "out"
    assert main(["image", str(src), "-o", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu"]) == 0
    result = cv2.imread(str(out / "street.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == (15, 22, 3) and result.dtype == np.uint8
    model, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        expected = derain(model, torch.from_numpy(read_image(src)).permute(2, 0, 1)[None])[0]
    expected = np.round(expected.permute(1, 2, 0).numpy() * 255).astype(np.uint8)[..., ::-1]
    assert np.abs(result.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_image_stages_equal_the_models_stage_output(tmp_path: Path, stages: int) -> None:
    from brns import plain_brn

    from derain.models import save_checkpoint

    model = plain_brn(stages=3)
    weights = save_checkpoint(model, tmp_path / "three.safetensors", training_data="random")
    src = write(tmp_path / "in" / "street.png", rng_image(12, 16))
    out = tmp_path / "out"
    args = ["image", str(src), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--engine", "eager", "--stages", str(stages)]
    assert main(args) == 0
    result = cv2.imread(str(out / "street.png"), cv2.IMREAD_UNCHANGED)
    with torch.no_grad():
        xs, _ = model.forward_stages(torch.from_numpy(read_image(src)).permute(2, 0, 1)[None])
    expected = np.round(xs[stages - 1][0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)[..., ::-1]
    assert np.abs(result.astype(int) - expected).max() <= 1
    if stages < 3:  # the stage outputs differ, so the match above is the requested stage's
        final = np.round(xs[-1][0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)[..., ::-1]
        assert np.abs(result.astype(int) - final).max() > 1


def test_image_stages_beyond_the_checkpoints_is_one_line(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in" / "street.png", rng_image(12, 16))
    assert main(["image", str(src), "-o", str(tmp_path / "out"), "--weights", str(tiny_checkpoint), "--stages", "2"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "--stages 2" in message


def test_image_kinds_and_folders(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "gray.png", rng_image(9, 13, 1))
    write(folder / "alpha.png", rng_image(10, 7, 4, seed=1))
    write(folder / "deep.png", rng_image(8, 8, 3, np.uint16, seed=2))
    write(folder / "photo.jpg", rng_image(11, 17, seed=3))
    (folder / "notes.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"
    args = ["image", str(folder), "-o", str(out), "--weights", str(tiny_checkpoint), "--rain"]
    assert main(args) == 0
    shapes = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape for p in out.iterdir()}
    assert shapes == {
        "gray.png": (9, 13, 3), "gray_rain.png": (9, 13, 3),
        "alpha.png": (10, 7, 4), "alpha_rain.png": (10, 7, 3),
        "deep.png": (8, 8, 3), "deep_rain.png": (8, 8, 3),
        "photo.png": (11, 17, 3), "photo_rain.png": (11, 17, 3),
    }
    alpha = cv2.imread(str(out / "alpha.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    assert np.array_equal(alpha, rng_image(10, 7, 4, seed=1)[..., 3])


def test_unreadable_image_fails_alone(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    good = write(tmp_path / "good.png", rng_image(8, 8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert main(["image", str(bad), str(good), "-o", str(out), "--weights", str(tiny_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: not a readable image" in err.replace("\n", "")
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_an_image_too_large_for_the_device_fails_alone(tmp_path: Path) -> None:
    from stand_ins import IdentityEngine

    from derain.stream.images import plan_jobs, run_jobs

    class SmallDevice(IdentityEngine):
        def run(self, batch: torch.Tensor) -> torch.Tensor:
            if batch.shape[-1] > 16:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB\ndetails")
            return super().run(batch)

    big, small = write(tmp_path / "big.png", rng_image(32, 32)), write(tmp_path / "small.png", rng_image(8, 8))
    (tmp_path / "out").mkdir()
    reports: list[tuple[str, str | None]] = []
    failed = run_jobs(SmallDevice(), None, plan_jobs([big, small], tmp_path / "out", False), lambda j, e: reports.append((j.source.name, e)))
    assert failed == 1 and reports == [("big.png", f"{big}: CUDA out of memory. Tried to allocate 9.00 GiB"), ("small.png", None)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]


def test_image_never_writes_over_an_input(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    """Into its own folder, a PNG would be derained over itself; with --rain, a.png's rain layer
    would overwrite an input named a_rain.png. Both are refused before anything is written."""
    folder = tmp_path / "in"
    a = write(folder / "a.png", rng_image(8, 8))
    write(folder / "a_rain.jpg", rng_image(8, 8, seed=1))
    before = a.read_bytes()
    weights = ["--weights", str(tiny_checkpoint)]
    assert main(["image", str(folder), "-o", str(folder), *weights]) == 2
    assert f"{folder / 'a.png'}: is the input {a}" in capsys.readouterr().err
    assert main(["image", str(a), str(folder / "a_rain.jpg"), "-o", str(tmp_path / "out"), "--rain", *weights]) == 2
    assert "would both be written to" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["image", str(a), "-o", str(a / "x"), *weights]) == 2
    assert "derain: error:" in capsys.readouterr().err
    assert a.read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["image", "{tmp}/missing", "-o", "{tmp}/o"], "no such file or folder"),
        (["image", "{tmp}/x.png", "-o", "{tmp}/o", "--weights", "{tmp}/nope.pth"], "no such checkpoint file"),
        (["image", "{tmp}/x.png", "-o", "{tmp}/o", "--weights", "{tmp}/x.png"], "not a readable checkpoint"),
        (["image", "{tmp}/x.png", "-o", "{tmp}/o", "--weights", "brn-r100l"], "derain weights fetch brn-r100l"),
        (["image", "{tmp}/x.png", "-o", "{tmp}/o", "--device", "cuda:7"], "--device cuda:7"),
        (["image", "{tmp}/x.png", "-o", "{tmp}/o", "--tile", "10"], "--tile 10 must be larger"),
        (["eval", "{tmp}/nowhere"], "no such data set folder"),
        (["eval", "{tmp}"], "no image pairs found"),
        (["eval", "{tmp}", "--json", "{tmp}/o/x.json"], "--json {tmp}/o/x.json: no such folder"),
        (["image", "{tmp}/photo[bold].png", "-o", "{tmp}/o"], "{tmp}/photo[bold].png: no such file or folder"),  # not rich markup
        (["export", "-o", "{tmp}/o/m.onnx"], "-o {tmp}/o/m.onnx: no such folder"),
        (["export", "-o", "{tmp}/m.onnx", "--shape", "1x3x2x2", "--dynamic"], "--shape 1x3x2x2: a --dynamic export traces"),
    ],
)
def test_bad_input_one_line(tmp_path: Path, capsys, tiny_checkpoint: Path, args: list[str], message: str) -> None:
    write(tmp_path / "x.png", rng_image(8, 8))
    args = [a.format(tmp=tmp_path) for a in args]
    if "--weights" not in args:
        args += ["--weights", str(tiny_checkpoint)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    message = message.format(tmp=tmp_path)
    assert err.count("\n") == 0 and err.startswith("derain: error:") and message in " ".join(err.split()), err
    assert not (tmp_path / "o").exists()


def test_train_bad_device_one_line(tmp_path: Path, capsys) -> None:
    write(tmp_path / "clean" / "x.png", rng_image(32, 32))
    args = ["train", "--data", str(tmp_path / "clean"), "--synthetic-rain", "--out", str(tmp_path / "run"), "--device", "gpu9"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("derain: error:") and "--device gpu9" in err and "\n" not in err


def make_pairs(root: Path, layout: str, n: int = 3) -> None:
    for i in range(1, n + 1):
        clean = rng_image(20, 24, seed=i)
        rainy = np.clip(clean.astype(int) + 30 * (np.arange(24) % 5 == 0)[None, :, None], 0, 255).astype(np.uint8)
        if layout == "authors":
            write(root / "rainy" / f"rain-{i:03d}.png", rainy)
            write(root / f"norain-{i:03d}.png", clean)
        else:
            rainy_dir, clean_dir = layout.split("+")
            write(root / rainy_dir / f"{i}.png", rainy)
            write(root / clean_dir / f"{i}.png", clean)


@pytest.mark.parametrize("layout", ["input+target", "rain+norain", "authors"])
def test_eval_layouts_and_json(tmp_path: Path, tiny_checkpoint: Path, layout: str) -> None:
    make_pairs(tmp_path / "set", layout)
    report = tmp_path / "r.json"
    assert main(["eval", str(tmp_path / "set"), "--weights", str(tiny_checkpoint), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["count"] == 3 and len(data["images"]) == 3
    assert set(data["images"][0]) >= {"name", "psnr", "ssim"}
    assert data["psnr"] == pytest.approx(np.mean([i["psnr"] for i in data["images"]]))
    assert 0 < data["ssim"] <= 1
    again = ["eval", str(tmp_path / "set"), "--weights", str(tiny_checkpoint), "--json", str(report), "--limit", "1"]
    assert main(again) == 2 and json.loads(report.read_text())["count"] == 3  # an earlier report is kept
    assert main([*again, "--overwrite"]) == 0 and json.loads(report.read_text())["count"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "set", "tiny.safetensors"]  # no temporary left


def test_eval_limit_must_be_a_count(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(tmp_path), "--limit", "-5"])
    assert exit_.value.code == 2 and "--limit: '-5': expected a whole number of at least 0" in capsys.readouterr().err


def test_image_replaces_earlier_outputs_only_with_overwrite(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    a, b = write(tmp_path / "in" / "a.png", rng_image(8, 8)), write(tmp_path / "in" / "b.png", rng_image(8, 8, seed=1))
    out, weights = tmp_path / "out", ["--weights", str(tiny_checkpoint)]
    assert main(["image", str(a), "-o", str(out), *weights]) == 0
    derained = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(b"kept")
    assert main(["image", str(a), str(b), "-o", str(out), *weights]) == 2
    assert f"{out / 'a.png'}: already exists; pass --overwrite" in " ".join(capsys.readouterr().err.split())
    assert (out / "a.png").read_bytes() == b"kept" and not (out / "b.png").exists()
    assert main(["image", str(a), str(b), "-o", str(out), "--overwrite", *weights]) == 0
    assert (out / "a.png").read_bytes() == derained and (out / "b.png").is_file()
    assert main(["image", str(a), "-o", str(a), *weights]) == 2
    assert f"-o {a}: is a file; give a folder for the PNGs" in " ".join(capsys.readouterr().err.split())


def test_natural_order_and_missing_truth(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        write(tmp_path / "input" / f"{i}.png", rng_image(4, 4))
        write(tmp_path / "target" / f"{i}.png", rng_image(4, 4))
    assert [p.name for p, _ in find_pairs(tmp_path)] == ["1.png", "2.png", "10.png"]
    (tmp_path / "target" / "10.png").unlink()
    with pytest.raises(FileNotFoundError, match="no ground truth"):
        find_pairs(tmp_path)


@needs_official
@needs_rain100l
def test_rain100l_subset_with_authors_checkpoint(tmp_path: Path) -> None:
    """The first five Rain100L pairs through the installed console script, per-image figures pinned.

    The full set (100 pairs) is in benchmarks/RESULTS.md; it takes minutes on a 2-core CPU.
    """
    report = tmp_path / "r.json"
    subprocess.run(
        [sys.executable, "-m", "derain", "eval", str(RAIN100L), "--limit", "5", "--device", "cpu",
         "--weights", str(OFFICIAL / "BRN_R100L.pth"), "--json", str(report)],
        check=True, capture_output=True,
    )
    data = json.loads(report.read_text())
    psnr = [round(i["psnr"], 2) for i in data["images"]]
    assert psnr == [37.83, 37.94, 40.46, 40.05, 37.85]
    assert all(i["psnr"] - i["input_psnr"] > 5 for i in data["images"])
