"""`import derain`: the README's examples, and the promises of the public API."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from videos import make_video, picture, video_info

import derain

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_the_readmes_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "rainy.mp4", frames=3, audio="aac")
    import cv2

    cv2.imwrite(str(tmp_path / "rainy.png"), picture(64, 48, 0)[..., ::-1])
    (tmp_path / "notes.txt").write_text("not a video")
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "3 " in out and "brn-builtin" in out and "cannot be read as a video" in out
    assert (tmp_path / "clean.mp4").is_file() and (tmp_path / "out" / "rainy.png").is_file()
    assert not (tmp_path / "out.mp4").exists()


def test_import_is_lazy_and_the_api_is_listed() -> None:
    code = "import sys, derain; print('torch' in sys.modules, sorted(derain.__all__) == sorted(dir(derain)) or 'dir')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "False"
    assert set(derain.__all__) == {"__version__", *derain._EXPORTS}
    for name in derain.__all__:
        assert getattr(derain, name) is not None


def test_video_takes_str_paths_and_keeps_timing(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=5, audio="aac")
    seen: list[derain.api.VideoProgress] = []
    report = derain.video(str(src), str(tmp_path / "out.mp4"), weights=str(tiny_checkpoint), device="cpu", on_progress=seen.append)
    assert isinstance(report.frames, int) and report.frames == 5 and isinstance(report.fps, float)
    assert video_info(tmp_path / "out.mp4")["pts"] == video_info(src)["pts"]
    assert seen and seen[-1].written == 5


@pytest.mark.parametrize("bad", ["not-a-video.mp4", "missing.mp4"])
def test_a_refused_input_raises_one_line_and_writes_nothing(tmp_path: Path, tiny_checkpoint: Path, bad: str) -> None:
    if bad == "not-a-video.mp4":
        (tmp_path / bad).write_text("text")
    with pytest.raises((derain.DerainError, FileNotFoundError)) as caught:
        derain.video(tmp_path / bad, tmp_path / "o.mp4", weights=tiny_checkpoint, device="cpu")
    assert "\n" not in str(caught.value) and bad in str(caught.value)
    assert not (tmp_path / "o.mp4").exists()


def test_errors_are_one_hierarchy() -> None:
    for name in ("InputError", "OutputError", "WeightsError", "EngineError"):
        assert issubclass(getattr(derain, name), derain.DerainError)
    from derain.models.brn import CheckpointError
    from derain.stream.encode import OutputError

    assert issubclass(CheckpointError, derain.WeightsError) and OutputError is derain.OutputError


def test_frames_yields_derained_rgb_with_times(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4, rate=25)
    engine = derain.build_engine(derain.load_model(), device="cpu")
    frames = list(derain.frames(src, engine))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.time for f in frames] == pytest.approx([0, 0.04, 0.08, 0.12])
    assert frames[0].rgb.shape == (48, 64, 3) and frames[0].rgb.dtype == np.uint8


def test_image_reports_each_file(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), picture(32, 24, 1))
    (tmp_path / "b.png").write_text("not an image")
    report = derain.image([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "out", weights=tiny_checkpoint, device="cpu")
    assert report.written == {tmp_path / "a.png": tmp_path / "out" / "a.png"}
    assert list(report.failed) == [tmp_path / "b.png"]


def test_live_stops_from_another_thread(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = make_video(tmp_path / "in.mkv", frames=250, rate=25)
    from derain.stream.live_pipeline import LiveStats

    stop, stats = threading.Event(), LiveStats()

    def stop_once_frames_flow() -> None:
        while stats.written < 5:
            threading.Event().wait(0.05)
        stop.set()

    threading.Thread(target=stop_once_frames_flow, daemon=True).start()
    report = derain.live(src, realtime=True, output=tmp_path / "rec.mkv", weights=tiny_checkpoint, device="cpu",
                         stop=stop, stats=stats)
    assert report.stopped_by == "stop" and 5 <= report.stats["frames_out"] < 250
    assert len(video_info(tmp_path / "rec.mkv")["pts"]) == report.stats["frames_out"]


def test_live_job_is_a_context(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = make_video(tmp_path / "in.mkv", frames=250, rate=25)
    from derain.stream.live_pipeline import LiveStats

    stats = LiveStats()
    with derain.LiveJob(src, realtime=True, output=tmp_path / "rec.mkv", weights=tiny_checkpoint, device="cpu", stats=stats) as job:
        while stats.written < 3:
            threading.Event().wait(0.05)
    assert job.report.stats["frames_out"] > 0 and (tmp_path / "rec.mkv").is_file()


def test_live_refuses_bad_options_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(derain.api, "engine_for", no_model)
    url = "rtsp://127.0.0.1:9/x"
    for options, error in (({"timeout": 0}, derain.InputError), ({"drop_policy": "thin"}, derain.InputError),
                           ({"restream": "foo://x"}, derain.InputError), ({"output": tmp_path / "no" / "x.mkv"}, FileNotFoundError)):
        with pytest.raises(error):
            derain.live(url, **options)  # type: ignore[arg-type]
    from derain.cli import main

    assert main(["live", url, "--json", str(tmp_path / "no" / "s.jsonl")]) == 2


def test_a_live_job_never_started_says_so() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        derain.LiveJob("rtsp://127.0.0.1:9/x").stop()
