"""`derain bench`: FLOP and byte counts, the authors' baseline, shared inputs, the JSON and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from brns import plain_brn, random_brn
from torch import nn

from derain.benchmarks.baseline import AuthorsBaseline, AuthorsBRN
from derain.benchmarks.harness import FramePool
from derain.benchmarks.roofline import frame_cost
from derain.benchmarks.runner import Plan, run_bench
from derain.cli import build_parser, main
from derain.engines.eager import EagerEngine
from derain.models.brn import BRN, VARIANTS, conv_flops

ROW_FIELDS = {
    "engine", "precision", "batch", "height", "width", "fps", "latency_ms_p50", "latency_ms_p99",
    "flops_per_frame", "speedup_vs_baseline", "peak_memory_mb", "build_seconds", "compute_floor_share",
    "memory_floor_share", "min_bytes_per_frame", "input_checksum",
}
DEVICE_FIELDS = {"gpu", "driver", "cuda", "torch", "torch_tensorrt", "tensorrt", "cpu", "torch_threads", "gpu_clocks", "cpu_clocks"}
CPU = torch.device("cpu")
# On a shared 2-core machine a second intra-op thread waits for a busy core at every operator:
# tiny test frames run a hundred times faster on one thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def layer_shape_count(model: BRN, height: int, width: int) -> tuple[int, int]:
    """FLOPs and conv feature-map elements of a frame, from the Conv2d shapes alone.

    Every Conv2d of a BRN runs once a stage (3x3, stride 1, padding 1: output is H x W).
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    flops = sum(2 * c.weight.numel() * height * width for c in convs)
    elements = sum((c.in_channels + c.out_channels) * height * width for c in convs)
    return model.stages * flops, model.stages * elements


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("stages", [1, 4])
def test_frame_cost_matches_layer_shapes(variant: str, stages: int) -> None:
    model = BRN(variant, stages)
    for height, width in ((48, 64), (37, 53), (1080, 1920)):
        cost = frame_cost(model, height, width)
        flops, elements = layer_shape_count(model, height, width)
        assert cost.flops == flops == conv_flops(model, height, width)
        assert cost.feature_map_elements == elements
        assert cost.min_bytes("fp16") == 2 * elements and cost.min_bytes("fp32") == 4 * elements


def test_frame_cost_agrees_with_the_design_figures() -> None:
    # DESIGN.md section 7: 6.2 TFLOP and about 28 GB of FP16 feature maps for a 1080p frame.
    cost = frame_cost(BRN("brn", 4), 1080, 1920)
    assert cost.flops / 1e12 == pytest.approx(6.2, rel=0.01)
    assert 25e9 < cost.min_bytes("fp16") < 29e9


@pytest.mark.parametrize("variant", VARIANTS)
def test_authors_module_equals_brn(variant: str) -> None:
    model = random_brn(variant, stages=2)  # two stages: the second reads the first's hidden states
    y = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x, r = model(y)
        xa, ra = AuthorsBRN.from_brn(model)(y)
    torch.testing.assert_close(xa, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(ra, r, atol=1e-5, rtol=0)
    # Four gate convolutions a branch, not one fused one.
    convs = {n for n, m in AuthorsBRN.from_brn(model).named_modules() if isinstance(m, nn.Conv2d)}
    assert {f"conv_{g}{s}.0" for g in "ifgo" for s in ("", "_r")} <= convs


def test_baseline_round_trip_equals_clamped_brn() -> None:
    model = random_brn(stages=1)
    frame = FramePool.generate(12, 16, 1).host_frames()[0]
    out = AuthorsBaseline(model, CPU).run(frame)
    assert isinstance(out, np.ndarray) and out.shape == (3, 12, 16)
    with torch.no_grad():
        expected = model(torch.from_numpy(frame).permute(2, 0, 1)[None])[0].clamp(0, 1)[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def frame_digests(batch: torch.Tensor) -> list[str]:
    return [hashlib.sha256(f.float().contiguous().numpy().tobytes()).hexdigest() for f in batch.detach()]


def tiny_plan(**overrides: object) -> Plan:
    settings = {"resolutions": [(16, 12)], "batches": [1, 2], "engines": ["eager", "tensorrt"], "precisions": ["fp32"],
                "iterations": 2, "warmup": 1}
    settings.update(overrides)
    return Plan(**settings)  # type: ignore[arg-type]


def test_baseline_and_engines_see_the_same_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, set[str]] = {"baseline": set(), "eager": set()}
    authors_forward, eager_run = AuthorsBRN.forward, EagerEngine.run

    def spy_authors(self: AuthorsBRN, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen["baseline"].update(frame_digests(y))
        return authors_forward(self, y)

    def spy_eager(self: EagerEngine, batch: torch.Tensor) -> torch.Tensor:
        seen["eager"].update(frame_digests(batch))
        return eager_run(self, batch)

    monkeypatch.setattr(AuthorsBRN, "forward", spy_authors)
    monkeypatch.setattr(EagerEngine, "run", spy_eager)
    plan = tiny_plan(iterations=3)  # with the warm-up call, the baseline sees all four frames
    report = run_bench(random_brn(stages=1), CPU, plan, "random")

    pool = FramePool.generate(12, 16, plan.pool_frames)
    assert seen["baseline"] == seen["eager"] == set(frame_digests(pool.frames))
    checksums = {row["input_checksum"] for row in report["rows"] + report["baseline"]}
    assert checksums == {pool.checksum}
    assert [(r["engine"], r["batch"]) for r in report["rows"]] == [("eager", 1), ("eager", 2)]
    assert report["skipped"][0]["engine"] == "tensorrt" and "not available here" in report["skipped"][0]["reason"]

    for row in report["rows"] + report["baseline"]:
        assert ROW_FIELDS <= set(row)
        assert row["flops_per_frame"] == conv_flops(random_brn(stages=1), 12, 16)
        assert row["fps"] > 0 and row["latency_ms_p99"] >= row["latency_ms_p50"] > 0
        assert 0 < row["compute_floor_share"] and 0 < row["memory_floor_share"]
    base = report["baseline"][0]
    assert base["speedup_vs_baseline"] == 1.0
    for row in report["rows"]:
        assert row["speedup_vs_baseline"] == pytest.approx(row["fps"] / base["fps"])
    assert DEVICE_FIELDS <= set(report["device"])
    assert report["peaks"]["compute_flops_per_s"] > 0 and report["peaks"]["bandwidth_bytes_per_s"] > 0


def test_frame_pool_batches_rotate_through_every_frame() -> None:
    pool = FramePool.generate(4, 5, 6)
    batches = pool.batches(4, CPU, torch.float16)
    assert [b.shape[0] for b in batches] == [4]  # 6 frames make one full batch of 4
    batches = pool.batches(2, CPU, torch.float32)
    assert torch.equal(torch.cat(batches), pool.frames)


def test_cli_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "derain", "bench", "--device", "cpu", "--resolution", "64x48", "--batch", "1",
           "--engine", "eager", "--precision", "fp32", "--json", str(out), "--stages", "1", "--iterations", "1"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert DEVICE_FIELDS <= set(report["device"]) and report["device"]["torch"] == torch.__version__
    [row] = report["rows"]
    assert ROW_FIELDS <= set(row)
    assert (row["engine"], row["precision"], row["batch"], row["height"], row["width"]) == ("eager", "fp32", 1, 48, 64)
    assert row["flops_per_frame"] == conv_flops(BRN("brn", 1), 48, 64)
    assert report["baseline"][0]["input_checksum"] == row["input_checksum"]
    assert "eager" in done.stderr and "baseline" in done.stderr  # the table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolution", "64by48"], "--resolution"),
        (["--batch", "0"], "--batch"),
        (["--engine", "fast"], "--engine"),
        (["--precision", "fp8"], "--precision"),
    ],
)
def test_bad_options_name_the_option(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_input_and_resolution_together_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from videos import make_video

    video = make_video(tmp_path / "in.mp4", frames=2)
    assert main(["bench", "--device", "cpu", "--input", str(video), "--resolution", "64x48"]) == 2
    assert "--resolution" in capsys.readouterr().err


def test_end_to_end_mode_runs_the_pipeline_and_a_transcode(tmp_path: Path) -> None:
    from videos import make_video

    video = make_video(tmp_path / "in.mp4", size=(32, 24), frames=3)
    plan = tiny_plan(resolutions=[(32, 24)], batches=[2], engines=["eager"], iterations=1, video=video)
    report = run_bench(random_brn(stages=1), CPU, plan, "random")
    [row] = report["rows"]
    e2e = row["end_to_end"]
    assert e2e["frames"] == 3 and e2e["error"] is None and e2e["fps"] > 0
    assert e2e["stages_ms_per_frame"]["engine"] > 0
    assert report["transcode"]["frames"] == 3 and report["transcode"]["fps"] > 0


def test_rain_stats_bins_the_luma_rise_and_splits_the_error(tmp_path: Path) -> None:
    from derain.benchmarks.rain_stats import dataset_rain, error_split, rise_stats
    from derain.models.data import find_pairs, to_uint8, write_png

    clean = np.full((32, 48, 3), 0.4, np.float32)
    rainy = clean.copy()
    rainy[:, :12] += 12 / 219  # a quarter of the pixels rise by 12 luma codes (studio swing: 219 codes span 0-1)
    rainy[:, 12:16] += 40 / 219  # and a twelfth by 40
    hist, psnr = rise_stats(to_uint8(rainy), to_uint8(clean))
    assert hist.sum() == pytest.approx(1 / 3, abs=1e-6) and hist[1] == pytest.approx(1 / 4, abs=1e-6) and hist[4] == pytest.approx(1 / 12, abs=1e-6)
    assert 20 < psnr < 30
    for folder, image in (("input", rainy), ("target", clean)):
        (tmp_path / folder).mkdir()
        write_png(tmp_path / folder / "1.png", image)
    pairs = find_pairs(tmp_path)
    assert dataset_rain(pairs)["rain_share"] == pytest.approx(1 / 3, abs=1e-4)
    split = error_split(pairs, lambda y: y)
    # A model that removes nothing leaves all its error on the rain pixels, as a positive bias.
    assert split["rain_pixels"] == pytest.approx(1 / 3, abs=1e-3) and split["error_on_rain_pixels"] == 1.0
    assert split["bias_on_rain_pixels"] > 10 and split["bias_elsewhere"] == 0.0


def test_cli_rows_name_what_was_asked_and_what_ran(tmp_path: Path, shared_engine_cache: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "derain", "bench", "--device", "cpu", "--resolution", "32x24", "--engine", "eager,auto",
           "--precision", "auto", "--stages", "1", "--iterations", "1", "--json", str(out)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    report = json.loads(text)
    assert report["complete"] is True
    # auto measures the CPU backends and runs the fastest, in a row of its own even when that is eager.
    eager, auto = report["rows"]
    assert (eager["requested"], eager["engine"], eager["precision"], eager["stages"]) == ("eager", "eager", "fp32", 1)
    assert (auto["requested"], auto["precision"], auto["stages"]) == ("auto", "fp32", 1)
    assert auto["engine"] == auto["auto"]["backend"] and auto["auto"]["backend"] in auto["auto"]["ms"]
    assert eager["psnr_vs_fp32"] is None  # eager fp32 is the reference itself
    assert auto["psnr_vs_fp32"] is None or auto["psnr_vs_fp32"] > 80  # within 1e-4 of it
    assert report["thread_policy"].startswith("every backend runs 1 intra-op thread:")
    assert "auto picked" in done.stderr


def test_a_failed_row_is_reported_and_the_json_follows_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from derain.cli import options
    from derain.engines.compiled import CompileEngine

    def broken(self: CompileEngine, batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom\nand a traceback's worth of detail")

    written: list[tuple[int, bool]] = []
    write_json = options.write_json

    def spy(path: str | Path, record: dict[str, object]) -> None:
        written.append((len(record["rows"]), bool(record["complete"])))  # type: ignore[arg-type]
        write_json(path, record)

    monkeypatch.setattr(CompileEngine, "_run", broken)
    monkeypatch.setattr(options, "write_json", spy)
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--resolution", "16x12", "--engine", "compile,eager", "--precision", "fp32",
            "--stages", "1", "--iterations", "1", "--json", str(out)]
    assert main(args) == 1
    failed, ok = json.loads(out.read_text())["rows"]
    assert (failed["requested"], failed["engine"], failed["error"]) == ("compile", "compile", "RuntimeError: boom")
    assert "error" not in ok and ok["fps"] > 0
    # After the baseline, after each engine row, and the whole report at the end.
    assert written == [(0, False), (1, False), (2, False), (2, True)]


def test_bf16_row_scores_against_fp32() -> None:
    plan = tiny_plan(engines=["eager"], precisions=["bf16"], batches=[1], iterations=1)
    [row] = run_bench(plain_brn(stages=1), CPU, plan, "random")["rows"]
    assert row["precision"] == "bf16" and 30 < row["psnr_vs_fp32"] < 80  # type: ignore[operator]


def test_stages_beyond_the_checkpoints_is_one_line(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--device", "cpu", "--weights", str(tiny_checkpoint), "--stages", "2"]) == 2
    message = capsys.readouterr().err.strip()
    assert "--stages 2" in message and "has 1 recurrent stages" in message and len(message.splitlines()) == 1
