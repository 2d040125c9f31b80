"""`derain demo`: no arguments, no network, the built-in weights, a clip that gets cleaner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import av

from derain.models.hub import BUILTIN_PATH


def test_demo_runs_offline_and_gains(tmp_path: Path) -> None:
    assert BUILTIN_PATH.is_file(), "the built-in weights ship with the package"
    # No proxy, no mirror: a download attempt would fail loudly rather than go out.
    env = {**os.environ, "COLUMNS": "200", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "derain.stream.cli", "demo"], cwd=tmp_path, env=env,
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
    gain = re.search(r"gain \+?(-?[\d.]+) dB", " ".join(done.stderr.split()))
    assert gain and float(gain.group(1)) > 0, done.stderr
