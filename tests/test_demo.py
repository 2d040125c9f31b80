"""`derain demo`: no arguments, no network, the built-in weights, a clip that gets cleaner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from derain.cli import main
from derain.models.hub import BUILTIN_PATH
from derain.stream import demo


def test_demo_runs_offline_and_gains(tmp_path: Path) -> None:
    assert BUILTIN_PATH.is_file(), "the built-in weights ship with the package"
    # No proxy, no mirror: a download attempt would fail loudly rather than go out.
    env = {**os.environ, "COLUMNS": "200", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "derain", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "derain-demo"
    sizes = {}
    for name in ("rainy", "derained", "compare"):
        with av.open(str(out / f"{name}.mp4")) as container:
            frames = list(container.decode(video=0))
            sizes[name] = (len(frames), frames[0].width, frames[0].height)
    assert sizes["rainy"] == sizes["derained"]
    assert sizes["compare"] == (sizes["rainy"][0], 2 * sizes["rainy"][1], sizes["rainy"][2])
    gain = re.search(r"gain \+?(-?[\d.]+) dB", " ".join(done.stdout.split()))  # a result: on stdout
    assert gain and float(gain.group(1)) > 0, done.stdout + done.stderr


def test_a_failed_or_stopped_rerun_keeps_the_last_demo(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, weights = tmp_path / "demo", ["--weights", str(tiny_checkpoint)]
    assert main(["demo", "-o", str(out), *weights]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["compare.mp4", "derained.mp4", "rainy.mp4"]
    assert main(["demo", "-o", str(out), "--batch", "0", *weights]) == 2

    def ctrl_c(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "side_by_side", ctrl_c)  # stopped after the derained clip, before the last one
    assert main(["demo", "-o", str(out), *weights]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no scratch folder left


def test_the_rainy_clip_is_the_same_on_every_run(tmp_path: Path) -> None:
    """x264's lookahead gave other bits from run to run in a process that had run torch."""
    clean = demo.clean_frames()
    rainy = demo.rainy_frames(clean)
    clips = []
    for k in range(3):
        demo.write_clip(tmp_path / f"{k}.mp4", rainy)
        clips.append((tmp_path / f"{k}.mp4").read_bytes())
    assert clips[0] == clips[1] == clips[2]
