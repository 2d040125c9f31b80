"""Temporal quality (warping error, flicker), temporal fusion, and `derain eval-video`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from derain.cli import main
from derain.models.flow import Motion, inside, motion
from derain.models.metrics import psnr_y, to_uint8_truncated
from derain.models.synth import RainStyle, RainVideo
from derain.models.temporal import FUSION_RULES, fuse_sequence, fuse_window, removed_light
from derain.models.temporal_metrics import flicker, score_sequences, warp_error

H, W = 72, 96
FAINT = RainStyle(density=0.003, length=12.0, angle=12.0, width=1.2, intensity=0.2)  # residual streaks


def texture(seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """uint8 RGB: smooth random texture, structure for the flow to hold on to everywhere."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 200 + 20).astype(np.uint8)


def still(flow: np.ndarray | None = None) -> Motion:
    zero = np.zeros((H, W, 2), np.float32) if flow is None else flow
    return Motion(zero, inside(zero))


def test_a_known_whole_pixel_shift_has_zero_warping_error_along_its_flow() -> None:
    dx, dy = 3, 2
    frames = [np.roll(texture(), (t * dy, t * dx), axis=(0, 1)) for t in range(3)]
    shift = np.broadcast_to(np.array([-dx, -dy], np.float32), (H, W, 2)).copy()  # where frame t's pixels were in t-1
    known = Motion(shift, inside(shift))
    assert warp_error(frames[1], frames[0], known) < 1e-12
    # DIS finds that flow itself: the error stays near zero, and far below the error without it.
    found = motion(frames[2], frames[1])
    assert warp_error(frames[2], frames[1], found) < 2e-4 < warp_error(frames[2], frames[1], still()) / 50


def test_a_blinking_square_raises_the_warping_error_by_its_hand_computed_value() -> None:
    base = texture()
    blink = base.copy()
    blink[10:18, 20:28] += 51  # 8x8 pixels, +0.2 in each channel
    assert warp_error(base, base, still()) == 0.0
    assert warp_error(blink, base, still()) == pytest.approx(3 * 0.2**2 * 64 / (H * W), rel=1e-5)


def test_flicker_is_the_brightness_step_in_luma_codes() -> None:
    base = texture()
    brighter = base + np.uint8(10)
    assert flicker(base, base, still()) == 0.0
    # Y of BT.601 studio swing moves 219/255 of a code per code of R, G and B.
    assert flicker(brighter, base, still()) == pytest.approx(10 * 219 / 255, rel=1e-4)


def test_a_pair_across_a_scene_cut_has_no_temporal_figures() -> None:
    frames = [texture(1), texture(1), texture(2)]
    scores = score_sequences(frames, frames, frames)
    assert scores[1].output_warp_error == 0.0 and scores[1].input_flicker == 0.0
    assert scores[2].output_warp_error is None and scores[2].output_flicker is None and scores[2].output_psnr is not None


def rainy_still_scene(frames: int = 7) -> tuple[np.ndarray, list[np.ndarray]]:
    clean = texture().astype(np.float32) / 255
    field = RainVideo(H, W, FAINT, speed=24.0, seed=3)
    return clean, [field.frame(clean, k)[0] for k in range(frames)]


@pytest.mark.parametrize("rule", FUSION_RULES)
def test_streaks_moving_over_a_still_scene_are_fused_away(rule: str) -> None:
    clean, rainy = rainy_still_scene()
    target = to_uint8_truncated(clean)
    before = np.mean([psnr_y(to_uint8_truncated(f), target) for f in rainy])
    after = np.mean([psnr_y(to_uint8_truncated(f), target) for f in fuse_sequence(rainy, 5, rule)])
    assert after > before + 2.0


@pytest.mark.parametrize("rule", FUSION_RULES)
def test_a_moving_object_is_not_smeared(rule: str) -> None:
    background = texture().astype(np.float32) / 255
    field = RainVideo(H, W, FAINT, speed=24.0, seed=5)
    clean, rainy = [], []
    for k in range(5):
        frame = background.copy()
        frame[20:40, 10 + 6 * k : 30 + 6 * k] = (0.9, 0.2, 0.1)  # a red square moving 6 px a frame
        clean.append(frame)
        rainy.append(field.frame(frame, k)[0])
    fused = fuse_window(rainy, 2, rule)
    region = np.s_[14:46, 16:48]  # the square in frame 2 and a margin round it
    target = to_uint8_truncated(clean[2][region])
    per_frame = psnr_y(to_uint8_truncated(rainy[2][region]), target)
    assert psnr_y(to_uint8_truncated(fused[region]), target) > per_frame - 0.3


@pytest.mark.parametrize("rule", FUSION_RULES)
def test_a_scene_cut_keeps_the_current_frame(rule: str) -> None:
    before, after = texture(1).astype(np.float32) / 255, texture(2).astype(np.float32) / 255
    np.testing.assert_array_equal(fuse_window([before, after, before], 1, rule), after)
    # Even where the model removed light everywhere, nothing from another scene comes in.
    removed = [np.full((H, W), 50.0, np.float32)] * 3
    np.testing.assert_array_equal(fuse_window([before, after, before], 1, "rain", removed), after)


def model_stand_in(clean: np.ndarray, rainy: np.ndarray) -> np.ndarray:
    """A derained frame as a model leaves it: rain gone, but where a streak was, the background
    guessed from a blurred, darkened neighbourhood (the model's error is where the rain was)."""
    guess = cv2.GaussianBlur(clean, (0, 0), 3.0) * 0.9
    return np.where((rainy - clean).max(axis=-1, keepdims=True) > 0.02, guess, clean).astype(np.float32)


@pytest.mark.parametrize("causal", [False, True])
def test_the_rain_rule_mends_what_the_model_guessed_under_streaks_from_neighbours_clean_there(causal: bool) -> None:
    clean, rainy = rainy_still_scene()
    derained = [model_stand_in(clean, frame) for frame in rainy]
    removed = [removed_light(r, d) for r, d in zip(rainy, derained)]
    target = to_uint8_truncated(clean)
    before = [psnr_y(to_uint8_truncated(f), target) for f in derained]
    fused = fuse_sequence(derained, 3, "rain", removed, causal=causal)
    after = [psnr_y(to_uint8_truncated(f), target) for f in fused]
    assert np.mean(after) > np.mean(before) + 3.0
    assert min(np.subtract(after, before)) >= 0  # no frame worse (a causal first frame, alone, is left as it is)


def test_a_causal_window_reduces_flicker_from_past_frames_alone() -> None:
    clean, rainy = rainy_still_scene(8)
    steady = [frame * np.float32(1.0 + 0.03 * (-1) ** k) for k, frame in enumerate(rainy)]  # pumping brightness, and streaks
    u8 = [to_uint8_truncated(f) for f in steady]
    fused = [to_uint8_truncated(f) for f in fuse_sequence(steady, 3, "mean", causal=True)]
    scores = score_sequences(u8, fused, [to_uint8_truncated(clean)] * len(u8))
    before, after = (np.mean([getattr(s, f"{side}_flicker") for s in scores[1:]]) for side in ("input", "output"))
    assert after < 0.7 * before
    # Frame t's window is frames t-2..t: the last frame changes nothing that came before it.
    again = fuse_sequence(steady[:-1], 3, "mean", causal=True)
    np.testing.assert_array_equal(again[-1], fuse_sequence(steady, 3, "mean", causal=True)[-2])


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for k, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{k}.png"), np.ascontiguousarray(frame[..., ::-1]))
    return folder


def test_eval_video_scores_input_and_output_side_by_side(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    clean, rainy = rainy_still_scene(4)
    rainy_dir = write_frames(tmp_path / "rainy", [to_uint8_truncated(f) for f in rainy])
    clean_dir = write_frames(tmp_path / "clean", [to_uint8_truncated(clean)] * 4)
    engine = ["--weights", str(tiny_checkpoint), "--device", "cpu"]
    assert main(["eval-video", str(rainy_dir), str(clean_dir), "--json", str(tmp_path / "r.json"), *engine]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 4 and report["flow_from"] == "clean" and len(report["per_frame"]) == 4
    for side in ("input", "output"):
        assert all(isinstance(report[side][m], float) for m in ("psnr", "ssim", "warp_error", "flicker"))
    assert "rainy input" in capsys.readouterr().out

    assert main(["eval-video", str(rainy_dir), "--temporal", "3", "--json", str(tmp_path / "n.json"), *engine]) == 0
    report = json.loads((tmp_path / "n.json").read_text())
    assert report["input"]["psnr"] is None and report["output"]["ssim"] is None and report["temporal"] == 3
    assert report["output"]["warp_error"] is not None and report["flow_from"] == "output"


def test_eval_video_refuses_sequences_that_do_not_match(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    frames = [texture(k) for k in range(3)]
    rainy_dir = write_frames(tmp_path / "rainy", frames)
    clean_dir = write_frames(tmp_path / "clean", frames[:2])
    assert main(["eval-video", str(rainy_dir), str(clean_dir), "--weights", str(tiny_checkpoint), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "has 2 frames" in error and "\n" not in error
    assert main(["eval-video", str(rainy_dir), "--temporal", "2", "--device", "cpu"]) == 2
    assert "--temporal 2" in capsys.readouterr().err


def test_a_fused_file_job_writes_every_frame_once_with_its_own_timestamp(tmp_path: Path) -> None:
    from fractions import Fraction

    from stand_ins import IdentityEngine
    from videos import make_video, video_info

    from derain.stream.encode import EncodeOptions
    from derain.stream.pipeline import VideoJob, run_video

    pts = [0, 40, 60, 140, 150, 400, 433, 500]
    src = make_video(tmp_path / "vfr.mp4", pts=pts, time_base=Fraction(1, 1000), frames=len(pts), audio="aac")
    for k, compare in ((3, False), (5, True)):
        dst = tmp_path / f"out{k}.mp4"
        summary = run_video(VideoJob(src, dst, temporal=k, compare=compare, encode=EncodeOptions(crf=0)), IdentityEngine())
        inp, out = video_info(src), video_info(dst)
        assert summary.complete and summary.frames == len(pts)
        assert [p * out["time_base"] for p in out["pts"]] == [p * inp["time_base"] for p in inp["pts"]]
        assert out["audio"] == inp["audio"] and "temporal" in summary.stages


def test_derain_video_temporal_from_the_command_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from videos import make_video

    src = make_video(tmp_path / "in.mp4", frames=6)
    dst = tmp_path / "out.mkv"
    engine = ["--weights", str(tiny_checkpoint), "--device", "cpu"]
    assert main(["video", str(src), "-o", str(dst), "--temporal", "3", "--fusion", "mean", *engine]) == 0
    assert main(["video", str(src), "-o", str(tmp_path / "x.mkv"), "--temporal", "4", *engine]) == 2
    assert not (tmp_path / "x.mkv").exists()
    assert main(["live", str(src), "--realtime", "-o", str(tmp_path / "y.mkv"), "--temporal", "4", *engine]) == 2
    assert not (tmp_path / "y.mkv").exists()


def test_eval_video_takes_a_video_beside_a_folder(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from videos import make_video, picture

    clean = make_video(tmp_path / "clean.mkv", codec="ffv1", pix_fmt="yuv444p", size=(64, 48), frames=3)
    rainy_dir = write_frames(tmp_path / "rainy", [picture(64, 48, k) for k in range(3)])
    out = tmp_path / "r.json"
    assert main(["eval-video", str(rainy_dir), str(clean), "--json", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 3 and report["input"]["psnr"] > 25  # the video holds the same pictures, up to YUV rounding
