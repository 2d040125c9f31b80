"""benchmarks/gpu_suite.py on the CPU: the parts of the GPU script that decide what its one
borrowed call returns (rows kept when it is cut short, errors and short runs recorded, exact
planes, a working NVDEC probe, a carry that fits) must be right before the call is spent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import SHARED, needs
from videos import make_video

from derain.benchmarks import gpu_suite
from derain.benchmarks.gpu_suite import (
    CARRY,
    CARRY_LIMIT,
    Report,
    carried,
    exact_fp32,
    identity_row,
    probe_decoder,
    run_parts,
    size_of,
)
from derain.benchmarks.pipeline_overhead import IdentityEngine

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device machine has one)")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """Eight H.264 frames in MP4: AVCC packets, the parameter sets in the stream's extradata."""
    return make_video(tmp_path / "in.mp4", frames=8)


class FailsAt(IdentityEngine):
    """Raises a CUDA-like error on call `at`, as a kernel fault mid-file would."""

    def __init__(self, at: int) -> None:
        super().__init__(CPU)
        self.at, self.calls = at, 0

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return batch


class Smudges(IdentityEngine):
    """Changes one pixel of frame `at` (batch 1): what a race that reuses a buffer too early does."""

    def __init__(self, at: int) -> None:
        super().__init__(CPU)
        self.at, self.calls = at, 0

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls - 1 != self.at:
            return batch
        out = batch.clone()
        out[:, :, 0, 0] += 0.2
        return out


def test_rows_measured_before_a_failing_part_stay_in_the_file(tmp_path: Path) -> None:
    report = Report(tmp_path / "gpu_suite.json", {"gpu": "test"})

    def breaks_halfway() -> None:
        report.add("video", {"what": "first row"})
        # What the file holds mid-call is what a call cut short here returns.
        assert json.loads(report.path.read_text())["video"] == [{"what": "first row"}]
        raise RuntimeError("CUDA error: device-side assert triggered")

    run_parts(report, {"video": breaks_halfway, "correctness": lambda: report.add("correctness", {"engine": "eager"})})
    saved = json.loads(report.path.read_text())
    assert saved["gpu"] == "test"
    assert saved["video"] == [{"what": "first row"}]
    assert saved["correctness"] == [{"engine": "eager"}]  # the next part still ran
    assert [e["part"] for e in saved["errors"]] == ["video"] and "device-side assert" in saved["errors"][0]["traceback"]
    assert [p.name for p in tmp_path.iterdir()] == ["gpu_suite.json"]  # no temporary file left behind


def test_exact_fp32_turns_tf32_off_for_the_block_and_restores_it() -> None:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with pytest.raises(RuntimeError), exact_fp32():
            assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
            raise RuntimeError("a part failed")
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_identity_pipeline_on_the_cpu_gives_back_the_input_planes(clip: Path, tmp_path: Path) -> None:
    row = identity_row(clip, tmp_path / "out.mkv", IdentityEngine(CPU), batch=3)
    assert row["ok"] and row["complete"] and row["error"] is None
    assert row["frames"] == row["expected_frames"] == 8
    assert row["planes"] == {"equal": True, "frames_compared": 8, "mismatched_frames": 0, "first_mismatches": [],
                             "max_code_difference": 0}


def test_identity_check_catches_one_changed_pixel(clip: Path, tmp_path: Path) -> None:
    row = identity_row(clip, tmp_path / "out.mkv", Smudges(at=5), batch=1)
    assert row["complete"] and row["frame_count_ok"]  # the run itself looks fine...
    assert not row["ok"]  # ...but the planes give it away
    planes = row["planes"]
    assert not planes["equal"] and planes["first_mismatches"] == [5] and planes["max_code_difference"] > 10


def test_an_error_mid_file_is_recorded_with_the_short_frame_count(clip: Path, tmp_path: Path) -> None:
    row = identity_row(clip, tmp_path / "out.mkv", FailsAt(3), batch=2)
    assert not row["ok"] and not row["complete"] and "illegal memory access" in row["error"]
    assert row["expected_frames"] == 8 and row["frames"] < 8 and not row["frame_count_ok"]
    assert not row["planes"]["equal"]


@needs_cuda
def test_identity_pipeline_on_cuda_gives_back_the_input_planes(clip: Path, tmp_path: Path) -> None:
    with exact_fp32():
        row = identity_row(clip, tmp_path / "out.mkv", IdentityEngine(torch.device("cuda")), batch=4)
    assert row["ok"], row


def test_decoder_probe_gives_the_decoder_the_streams_extradata(clip: Path) -> None:
    # The software decoder stands in for h264_cuvid: without the extradata it rejects every MP4 packet.
    assert probe_decoder("h264", clip) == "decoded only 8 frames"
    assert probe_decoder("h264", clip, wanted=5) == "works (5 frames decoded)"
    assert probe_decoder("no_such_decoder", clip).startswith("fails: ")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_a_call_carries_the_working_tree_and_its_own_paths_only(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    ignore = b"/.gpu/\n/.whl/\n/.venv/\n"
    (tmp_path / ".gitignore").write_bytes(ignore)
    (tmp_path / "tracked.py").write_bytes(b"x" * 100)
    git(tmp_path, "add", ".")
    (tmp_path / "untracked.py").write_bytes(b"x" * 10)
    for name, size in ((".whl/av.whl", 1000), (".gpu/BRN_R100L.pth", 200), (".gpu/Rain100L/input/1.png", 30),
                       (".gpu/Rain100L/target/1.png", 40), (".gpu/clean-photos/a.jpg", 5000), (".venv/big", 10**6)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    tree = len(ignore) + 100 + 10
    assert size_of(carried(tmp_path, "suite")) == tree + 1000 + 200 + 30 + 40
    assert size_of(carried(tmp_path, "bench")) == tree + 1000
    assert size_of(carried(tmp_path, "train")) == tree + 1000 + 5000
    (tmp_path / ".gpu/clean-photos/a.jpg").unlink()
    (tmp_path / ".gpu/clean-photos").rmdir()
    with pytest.raises(FileNotFoundError, match="clean-photos: not prepared"):
        carried(tmp_path, "train")


@needs(SHARED)
@pytest.mark.parametrize("call", CARRY)
def test_each_documented_call_fits_the_device_limit(call: str) -> None:
    missing = [name for name in CARRY[call] if not (REPO / name).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not prepared in {REPO}: run the preparation in gpu_suite's docstring first")
    size = size_of(carried(REPO, call))
    assert size <= CARRY_LIMIT, f"{call} sends {size / 2**20:.1f} MiB"


def test_carry_option_reports_without_weights_or_a_gpu(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    monkeypatch.setattr(gpu_suite, "ROOT", tmp_path)
    assert gpu_suite.main(["--carry"]) == 1  # nothing prepared: not a pass
    assert ".whl: not prepared" in capsys.readouterr().out
