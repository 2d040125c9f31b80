"""`derain video`: real files in, real files out; timing, tags, audio and pixels checked."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from brns import random_brn
from stand_ins import IdentityEngine, ModelEngine
from videos import corrupt_jpeg, make_resizing_mjpeg, make_video, remux, video_info

from derain.cli import main
from derain.models import save_checkpoint
from derain.stream.color import from_rgb, to_rgb
from derain.stream.decode import InputError
from derain.stream.encode import EncodeOptions, OutputError
from derain.stream.pipeline import VideoJob, run_video
from derain.stream.pixels import ColorSpec, layout_of

LOSSLESS = EncodeOptions(crf=0)


def derain_file(src: Path, dst: Path, engine=None, **job) -> tuple:
    summary = run_video(VideoJob(src, dst, **job), engine or IdentityEngine())
    return summary, video_info(src), video_info(dst)


def mean_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(np.int64) - y.astype(np.int64)).mean() for x, y in zip(a, b)]))


def as_rgb(planes: list[np.ndarray], fmt: str, height: int) -> torch.Tensor:
    spec = ColorSpec.of(layout_of(fmt), 2, 0, height)
    tensors = [torch.from_numpy(p.astype(np.int32).astype(np.int16 if p.dtype != np.uint8 else np.uint8))[None] for p in planes]
    return to_rgb(tensors, spec).clamp(0, 1)


def test_h264_with_aac_is_lossless_under_identity_and_keeps_audio(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", audio="aac", frames=12)
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", batch=3, encode=LOSSLESS)
    assert summary.complete and summary.frames == 12
    assert out["pts"] == inp["pts"] and out["time_base"] == inp["time_base"]
    assert (out["width"], out["height"], out["format"]) == (64, 48, "yuv420p")
    # Every audio packet comes back byte for byte, with its timestamp.
    assert len(inp["audio"]) > 10 and out["audio"] == inp["audio"]
    assert summary.passthrough_packets == len(inp["audio"])
    for a, b in zip(inp["planes"], out["planes"]):
        assert mean_abs(a, b) < 0.5


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "audio", "bound"),
    [("in.webm", "libvpx-vp9", "yuv420p", "libopus", 4.0), ("in.avi", "mjpeg", "yuvj420p", "pcm_s16le", 4.0)],
)
def test_other_containers(tmp_path: Path, name: str, codec: str, pix_fmt: str, audio: str, bound: float) -> None:
    src = make_video(tmp_path / name, codec=codec, pix_fmt=pix_fmt, frames=8, audio=audio)
    summary, inp, out = derain_file(src, tmp_path / ("out" + Path(name).suffix))
    assert summary.complete and len(out["pts"]) == len(inp["pts"]) == 8
    assert out["pts"] == inp["pts"]
    assert out["codec"] == inp["codec"]  # the suffix picked the same codec the input had
    assert out["audio"] == inp["audio"]
    # Lossy codecs: only a codec's worth of difference.
    for a, b in zip(inp["planes"], out["planes"]):
        assert mean_abs(a, b) < bound


def test_odd_size_keeps_size_as_444(tmp_path: Path) -> None:
    src = make_video(tmp_path / "odd.mkv", codec="libx264", pix_fmt="yuv444p", size=(65, 47), frames=5)
    # 4:2:0 input with odd sizes cannot be made by libx264, so feed 4:4:4 and ask for H.264
    # again; and a 4:2:0 odd-sized FFV1 input must come out 4:4:4 at the same size.
    src420 = make_video(tmp_path / "odd420.mkv", codec="ffv1", pix_fmt="yuv420p", size=(65, 47), frames=5)
    for source in (src, src420):
        summary, inp, out = derain_file(source, tmp_path / f"{source.stem}-out.mkv", encode=LOSSLESS)
        assert (out["width"], out["height"]) == (65, 47) and out["format"] == "yuv444p"
        assert out["pts"] == inp["pts"]
        for a, b in zip(inp["planes"], out["planes"]):
            diff = (as_rgb(a, inp["format"], 47) - as_rgb(b, out["format"], 47)).abs().mean() * 255
            assert diff < 0.5


def test_ten_bit_stays_ten_bit_and_lossless(tmp_path: Path) -> None:
    src = make_video(tmp_path / "ten.mp4", pix_fmt="yuv420p10le", frames=6)
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", encode=LOSSLESS, batch=2)
    assert out["format"] == "yuv420p10le" and out["pts"] == inp["pts"]
    for a, b in zip(inp["planes"], out["planes"]):
        assert mean_abs(a, b) < 0.5 * 4  # half an 8-bit level is two 10-bit codes


def test_variable_frame_rate_survives(tmp_path: Path) -> None:
    pts = [0, 40, 60, 140, 150, 400, 433, 500]
    src = make_video(tmp_path / "vfr.mp4", pts=pts, time_base=Fraction(1, 1000), frames=len(pts), audio="aac")
    summary, inp, out = derain_file(src, tmp_path / "out.mp4")
    assert [p * inp["time_base"] for p in inp["pts"]] == [Fraction(p, 1000) for p in pts]
    assert [p * out["time_base"] for p in out["pts"]] == [p * inp["time_base"] for p in inp["pts"]]
    assert out["audio"] == inp["audio"]


def test_rotation_and_colour_tags_are_kept(tmp_path: Path) -> None:
    src = make_video(tmp_path / "rot.mp4", rotation=90, frames=4, color_range=2, colorspace=1)
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", encode=LOSSLESS)
    assert inp["rotation"] == out["rotation"] == 90
    assert (out["width"], out["height"]) == (64, 48)  # coded size, rotated only on display
    assert (out["color_range"], out["colorspace"]) == (2, 1)
    for a, b in zip(inp["planes"], out["planes"]):
        assert mean_abs(a, b) < 0.5


def test_output_equals_engine_output_up_to_codec_loss(tmp_path: Path) -> None:
    """A real (one-stage, random) BRN: the decoded output is the engine's output for the decoded input."""
    src = make_video(tmp_path / "in.mp4", frames=4, size=(48, 32))
    engine = ModelEngine(random_brn(stages=1))
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", engine=engine, encode=LOSSLESS, batch=2)
    assert summary.frames == 4
    spec = ColorSpec.of(layout_of("yuv420p"), 2, 0, 32)
    for a, b in zip(inp["planes"], out["planes"]):
        derained = engine.run(to_rgb([torch.from_numpy(p)[None] for p in a], spec))
        expected = [p[0].numpy() for p in from_rgb(derained, spec)]
        assert mean_abs(expected, b) < 0.5
        assert mean_abs(a, b) > 2.0  # and the model really changed the frames


def test_compare_is_side_by_side(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3)
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", compare=True, encode=LOSSLESS)
    assert (out["width"], out["height"]) == (128, 48)
    left = [p[:, : p.shape[1] // 2] for p in out["planes"][0]]
    assert mean_abs(inp["planes"][0], left) < 0.5


def test_start_and_duration_cut_the_clip_and_restart_time(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=25, audio="aac")
    summary, inp, out = derain_file(src, tmp_path / "out.mp4", start=0.4, duration=0.4)
    assert summary.frames == 10
    assert out["pts"][0] * out["time_base"] == 0
    assert 0 < len(out["audio"]) < len(inp["audio"])


def test_audio_that_the_container_cannot_hold_is_refused(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=2, audio="aac")
    with pytest.raises(OutputError, match="cannot hold the input's audio"):
        run_video(VideoJob(src, tmp_path / "out.webm"), IdentityEngine())
    assert not (tmp_path / "out.webm").exists()


def test_zero_frames(tmp_path: Path) -> None:
    # FFmpeg drops a track without frames, so an empty MP4 has no video stream at all.
    empty = make_video(tmp_path / "empty.mp4", frames=0)
    with pytest.raises(InputError, match="holds no video stream"):
        run_video(VideoJob(empty, tmp_path / "out.mp4"), IdentityEngine())
    # Zero frames in the asked-for span.
    src = make_video(tmp_path / "short.mp4", frames=5)
    with pytest.raises(InputError, match="holds no frames at or after start=10"):
        run_video(VideoJob(src, tmp_path / "out.mp4", start=10.0), IdentityEngine())
    assert not (tmp_path / "out.mp4").exists()


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="cannot be read as a video"):
        run_video(VideoJob(text, tmp_path / "out.mp4"), IdentityEngine())
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        run_video(VideoJob(wav, tmp_path / "out.mp4"), IdentityEngine())


def test_truncated_files(tmp_path: Path) -> None:
    # An MP4 cut short loses its index (written last): refused up front.
    mp4 = make_video(tmp_path / "cut.mp4", frames=20)
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot be read"):
        run_video(VideoJob(mp4, tmp_path / "out.mp4"), IdentityEngine())
    # A Matroska file cut short still plays up to the cut: that much is derained.
    mkv = make_video(tmp_path / "cut.mkv", frames=20)
    mkv.write_bytes(mkv.read_bytes()[: int(mkv.stat().st_size * 0.6)])
    summary, inp, out = derain_file(mkv, tmp_path / "out.mkv")
    assert 0 < summary.frames < 20 and len(out["pts"]) == summary.frames


class StopsAt(IdentityEngine):
    """Raises `error` on call `at`, as Ctrl-C or a crash mid-file would."""

    def __init__(self, at: int, error: BaseException) -> None:
        super().__init__()
        self.at, self.error = at, error

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        if self.calls + 1 == self.at:
            raise self.error
        return super().run(batch)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("CUDA out of memory")])
def test_stopping_mid_file_leaves_a_playable_file(tmp_path: Path, error: BaseException) -> None:
    src = make_video(tmp_path / "in.mp4", frames=30, audio="aac")
    summary = run_video(VideoJob(src, tmp_path / "out.mp4", batch=2), StopsAt(6, error))
    assert not summary.complete and summary.output_kept
    assert (summary.interrupted == "SIGINT") if isinstance(error, KeyboardInterrupt) else ("out of memory" in summary.error)
    assert 0 < summary.frames <= 10
    assert len(video_info(tmp_path / "out.mp4")["pts"]) == summary.frames


def test_no_partial_removes_the_output(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=20)
    summary = run_video(VideoJob(src, tmp_path / "out.mp4", keep_partial=False), StopsAt(4, KeyboardInterrupt()))
    assert summary.interrupted == "SIGINT" and not summary.output_kept
    assert not (tmp_path / "out.mp4").exists()


def test_cli_json_and_no_overwrite(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 24), audio="aac")
    dst, report = tmp_path / "out.mp4", tmp_path / "summary.json"
    args = ["video", str(src), "-o", str(dst), "--weights", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*args, "--json", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["frames"] == 3 and summary["seconds"] > 0 and summary["fps"] > 0
    assert set(summary["stages"]) >= {"decode", "convert", "engine", "encode"}
    before = dst.stat().st_mtime_ns
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert dst.stat().st_mtime_ns == before
    assert main([*args, "--overwrite", "--crf", "0"]) == 0
    assert main(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.mp4"), "--weights", str(tiny_checkpoint)]) == 2
    assert "missing.mp4: no such file" in capsys.readouterr().err


def test_reduced_precision_guard_on_the_first_frame(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 24))
    dst = tmp_path / "out.mp4"
    # Large random weights amplify bf16 rounding far past the 45 dB guard: refused, nothing left behind.
    weights = save_checkpoint(random_brn(stages=1), tmp_path / "loud.safetensors", training_data="random")
    args = ["video", str(src), "-o", str(dst), "--weights", str(weights), "--device", "cpu", "--precision", "bf16", "--batch", "2"]
    assert main(args) == 2
    assert "differs from fp32" in capsys.readouterr().err and not dst.exists()
    assert main([*args, "--allow-lossy"]) == 0
    err = capsys.readouterr().err
    assert "going on because of --allow-lossy" in err and "bf16 vs fp32 on the first frame" in err
    assert len(video_info(dst)["pts"]) == 3


def test_sigint_mid_file_finalises_the_output(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A real `derain video` process, Ctrl-C'd while it works: the file plays to the frames it reports."""
    # Long enough (about 15 s on a quiet 2-core box) that the signal always lands mid-file.
    src = make_video(tmp_path / "in.mp4", frames=1000, size=(64, 48), audio="aac")
    dst, report = tmp_path / "out.mp4", tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "derain", "video", str(src), "-o", str(dst),
           "--weights", str(tiny_checkpoint), "--device", "cpu", "--json", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not dst.exists():
        time.sleep(0.1)  # the output is created once the model is loaded and the input opened
    time.sleep(1.5)  # some frames in (x264 holds them in its lookahead until the flush)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(report.read_text())
    assert summary["interrupted"] == "SIGINT" and 0 < summary["frames"] < 1000
    assert f"{summary['frames']} frames written to {dst}" in " ".join(err.split())
    info = video_info(dst)
    assert len(info["pts"]) == summary["frames"]
    assert info["audio"]  # the audio up to the cut is there too


def test_a_corrupt_packet_is_skipped_and_counted_not_the_end_of_the_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_video(tmp_path / "in.avi", codec="mjpeg", pix_fmt="yuvj420p", size=(160, 120), frames=30)
    corrupt_jpeg(src, 15)
    summary = run_video(VideoJob(src, tmp_path / "out.mkv", batch=4), IdentityEngine())
    assert summary.complete and summary.corrupt_packets == 1
    assert summary.frames == len(video_info(tmp_path / "out.mkv")["pts"]) == 29
    corrupt_jpeg(src, 0)  # the first frame too: decoding starts at the first good one
    summary = run_video(VideoJob(src, tmp_path / "out2.mkv"), IdentityEngine())
    assert summary.complete and summary.corrupt_packets == 2 and len(video_info(tmp_path / "out2.mkv")["pts"]) == 28


def test_an_input_error_mid_file_keeps_every_frame_before_it(tmp_path: Path) -> None:
    """MJPEG packets are independent pictures, so a stream can change size halfway: refused there,
    after the frames before it (some still queued for the engine) are all written."""
    src = make_resizing_mjpeg(tmp_path / "in.avi", frames=20, change_at=13)
    summary, _, out = derain_file(src, tmp_path / "out.mkv", batch=4)
    assert summary.error is not None and "frame 13 is 96x64" in summary.error and summary.output_kept
    assert summary.frames == len(out["pts"]) == 13


def test_start_and_duration_count_from_the_streams_first_timestamp(tmp_path: Path) -> None:
    """MPEG-TS from a camera or broadcast starts at any time, and seeks in it land near, not on, a keyframe."""
    src = make_video(tmp_path / "in.mp4", frames=100, audio="aac", options={"g": "250"})
    ts = remux(src, tmp_path / "late.ts", shift=600)
    cases = {(0.0, 1.0): 25, (1.0, None): 75, (2.5, 1.0): 25}
    for (start, duration), frames in cases.items():
        summary, inp, out = derain_file(ts, tmp_path / f"out-{start}.mkv", start=start, duration=duration)
        assert summary.frames == len(out["pts"]) == frames, (start, duration)
        if start:
            first = out["pts"][0] * out["time_base"]
            assert 0 <= first < Fraction(1, 25)
            # The first frame out is the first at or after --start (the encoder is lossy: the nearest picture).
            nearest = min(range(100), key=lambda k: mean_abs(out["planes"][0], inp["planes"][k]))
            assert nearest == math.ceil(start * 25)


def test_avi_takes_studio_range_video_as_full_range_jpeg(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=5, size=(64, 48))
    summary, inp, out = derain_file(src, tmp_path / "out.avi")
    assert summary.complete and len(out["pts"]) == 5 and out["format"] == "yuvj420p"
    rgb_in, rgb_out = (as_rgb(info["planes"][2], info["format"], 48) for info in (inp, out))
    assert float((rgb_in - rgb_out).abs().mean()) < 0.02  # same picture, not a range-shifted one


def test_avi_states_the_frame_rate_not_the_inputs_clock(tmp_path: Path) -> None:
    """MP4's 1/12800 clock as AVI's time base would claim 600 fps and pad with empty chunks."""
    src = make_video(tmp_path / "in.mp4", frames=12, rate=25)
    summary, _, out = derain_file(src, tmp_path / "out.avi")
    assert summary.complete and out["time_base"] == Fraction(1, 25) and out["pts"] == list(range(12))
    with av.open(str(tmp_path / "out.avi")) as container:
        video = container.streams.video[0]
        assert video.average_rate == 25 and [p.size > 0 for p in container.demux(video) if p.pts is not None] == [True] * 12


def test_adts_aac_into_avi_is_refused_before_any_work(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=10, audio="aac")
    ts = remux(src, tmp_path / "in.ts")  # AAC in MPEG-TS is ADTS-framed
    with pytest.raises(OutputError, match=r"out\.avi: a \.avi file cannot hold the input's ADTS AAC audio .*write \.mkv or \.mp4"):
        run_video(VideoJob(ts, tmp_path / "out.avi"), IdentityEngine())
    assert not (tmp_path / "out.avi").exists()
    summary, inp, out = derain_file(ts, tmp_path / "out.mkv")  # Matroska converts it
    assert summary.complete and len(out["audio"]) == len(inp["audio"]) > 0


def test_matroska_attachments_are_copied(tmp_path: Path) -> None:
    font = bytes(range(256)) * 4
    with_font = make_video(tmp_path / "in.mkv", frames=6, audio="aac", attachments={"subs-font.ttf": ("font/ttf", font)})
    summary, inp, out = derain_file(with_font, tmp_path / "out.mkv")
    assert summary.complete and len(out["pts"]) == 6 and out["audio"] == inp["audio"]
    with av.open(str(tmp_path / "out.mkv")) as container:
        [attachment] = [s for s in container.streams if s.type == "attachment"]
        assert (attachment.name, attachment.mimetype, bytes(attachment.data)) == ("subs-font.ttf", "font/ttf", font)
    with pytest.raises(OutputError, match=r"out\.mp4: a \.mp4 file cannot hold the input's attachment #2 \(subs-font\.ttf\); write \.mkv"):
        run_video(VideoJob(with_font, tmp_path / "out.mp4"), IdentityEngine())


def test_the_sample_aspect_ratio_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "dv.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.sample_aspect_ratio = Fraction(4, 3)
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * k, np.uint8), format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    for compare in (False, True):
        run_video(VideoJob(src, tmp_path / f"out-{compare}.mkv", compare=compare), IdentityEngine())
        with av.open(str(tmp_path / f"out-{compare}.mkv")) as result:
            assert result.streams.video[0].sample_aspect_ratio == Fraction(4, 3)


def test_encoder_settings_and_json_folder_are_refused_before_any_work(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 24))
    dst = tmp_path / "out.mp4"
    args = ["video", str(src), "-o", str(dst), "--weights", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*args, "--preset", "bogus"]) == 2
    assert main([*args, "--json", str(tmp_path / "no" / "summary.json")]) == 2
    (tmp_path / "summary.json").write_text("a report kept from before")
    assert main([*args, "--json", str(tmp_path / "summary.json")]) == 2
    first, second, third = capsys.readouterr().err.strip().splitlines()[-3:]
    assert "encoder libx264 refuses its settings" in first and "--preset bogus" in first and "check --preset, --crf and --bitrate" in first
    assert f"--json {tmp_path / 'no' / 'summary.json'}: no such folder" in second
    assert f"--json {tmp_path / 'summary.json'}: already exists; pass --overwrite" in third
    assert not dst.exists() and (tmp_path / "summary.json").read_text() == "a report kept from before"


def test_a_second_ctrl_c_while_the_output_is_finalised_is_ignored(tmp_path: Path, ctrl_c_in_sink_close: None) -> None:
    src = make_video(tmp_path / "in.mp4", frames=20, audio="aac")
    summary = run_video(VideoJob(src, tmp_path / "out.mp4", batch=2), StopsAt(4, KeyboardInterrupt()))
    assert summary.interrupted == "SIGINT" and summary.output_kept
    assert len(video_info(tmp_path / "out.mp4")["pts"]) == summary.frames > 0


def test_a_job_leaves_torchs_thread_count_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.set_num_threads is process-wide: a library job must not change it behind its caller."""
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    src = make_video(tmp_path / "in.mp4", frames=4)
    summary = run_video(VideoJob(src, tmp_path / "out.mp4", compare=True), IdentityEngine())
    assert summary.complete and summary.frames == 4
    assert calls == []


def test_a_stop_writes_the_frames_the_temporal_fusion_held_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from derain.stream.temporal import TemporalFilter

    pushed: list[int] = []
    push = TemporalFilter.push

    def recording_push(self: TemporalFilter, pts: int, planes: list, removed: np.ndarray | None = None) -> list:
        pushed.append(pts)
        return push(self, pts, planes, removed)

    monkeypatch.setattr(TemporalFilter, "push", recording_push)
    src = make_video(tmp_path / "in.mp4", frames=30)
    summary = run_video(VideoJob(src, tmp_path / "out.mp4", temporal=5), StopsAt(12, KeyboardInterrupt()))
    assert summary.interrupted == "SIGINT" and len(pushed) >= 3
    assert video_info(tmp_path / "out.mp4")["pts"] == pushed  # every frame the fusion took, none held back
