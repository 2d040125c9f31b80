"""The command line as the library's edge: fast help, results on stdout, whole lines, inputs
checked before the model, tracebacks on request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from videos import make_video

from derain.cli import COMMANDS, main

HEAVY = ("torch", "cv2", "skimage", "numba", "av")


def loaded_after(argv: list[str]) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after `derain ARGV`."""
    code = (
        "import sys\nfrom derain.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in COMMANDS)])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    assert loaded_after(argv) == set()


def test_python_m_derain_prints_the_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "derain", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: derain")


def test_the_choices_written_out_for_help_are_the_librarys() -> None:
    from derain.cli import bench, live, options, train
    from derain.engines import BACKENDS, PRECISIONS
    from derain.models.brn import VARIANTS
    from derain.models.train import AMP_MODES
    from derain.stream.live_pipeline import DROP_POLICIES

    assert options.ENGINES == BACKENDS and options.PRECISIONS == tuple(PRECISIONS)
    assert bench.VARIANTS == train.VARIANTS == tuple(VARIANTS)
    assert live.DROP_POLICIES == DROP_POLICIES and train.AMP_MODES == AMP_MODES


def test_every_command_says_what_it_does(capsys: pytest.CaptureFixture) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert text.split("\n\n")[1].strip() and not text.split("\n\n")[1].startswith(("positional", "options")), name
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "onnx: a portable graph" in capsys.readouterr().out


def test_results_go_to_stdout_and_logs_to_stderr(capsys: pytest.CaptureFixture) -> None:
    assert main(["weights", "list"]) == 0
    out, err = capsys.readouterr()
    assert "brn-r100l" in out and "brn-builtin" in out and "brn-r100l" not in err
    assert "carry no licence" in err


def test_a_missing_input_is_refused_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    long = tmp_path / ("a-very-long-folder-name-" * 4) / "missing.mp4"
    assert main(["video", str(long), "-o", str(tmp_path / "y.mp4"), "--weights", "no-such-weights"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()  # whole, not wrapped at 80 columns, and nothing about weights or engines
    assert line == f"derain: error: {long}: no such file"


def test_debug_shows_the_traceback_behind_the_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.mp4"
    assert main(["--debug", "video", str(missing), "-o", str(tmp_path / "y.mp4")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith(f"derain: error: {missing}: no such file")
    monkeypatch.setenv("DERAIN_DEBUG", "1")
    assert main(["video", str(missing), "-o", str(tmp_path / "y.mp4")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_video_result_line_on_stdout_and_json(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4)
    status = main(["video", str(src), "-o", str(tmp_path / "out.mp4"), "--weights", str(tiny_checkpoint),
                   "--device", "cpu", "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert status == 0 and out.strip() == f"{src} -> {tmp_path / 'out.mp4'}: 4 frames, " + out.split(", ")[-1].strip()
    # auto on the CPU, with only eager to measure in the tests (conftest), says so before the job.
    assert "auto picked eager" in err and json.loads((tmp_path / "r.json").read_text())["frames"] == 4


def test_image_guards_reduced_precision_even_when_the_first_input_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2
    from brns import random_brn
    from videos import picture

    from derain.models import save_checkpoint

    (tmp_path / "a-broken.png").write_text("not an image")
    cv2.imwrite(str(tmp_path / "b.png"), picture(32, 24, 0))
    weights = save_checkpoint(random_brn(stages=1), tmp_path / "loud.safetensors", training_data="random")
    status = main(["image", str(tmp_path / "a-broken.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"),
                   "--weights", str(weights), "--device", "cpu", "--precision", "bf16"])
    assert status == 2 and "differs from fp32" in capsys.readouterr().err
    assert not (tmp_path / "out" / "b.png").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_the_console_script_alone_tunes_the_allocator() -> None:
    import os

    # Where a 40 MB block comes from: the heap (below the program break) or a mapping of its own.
    probe = """
import ctypes
from derain.cli import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
tuned = keep_freed_memory()
print(tuned, libc.malloc(40 << 20) < libc.sbrk(0))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["True", "True"]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={**env, "GLIBC_TUNABLES": ""})
    assert done.stdout.split() == ["False", "False"]  # the user's own settings (here glibc's defaults) win
