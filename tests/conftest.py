from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OFFICIAL = SHARED / "weights" / "official"
RAIN100L = SHARED / "data" / "Rain100L"


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.is_dir(), reason=f"{path} is absent (only a checkout with ../shared has it)")


needs_official = needs(OFFICIAL)
needs_rain100l = needs(RAIN100L)


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_raises() -> None:
    """Tests Ctrl-C the main thread with `_thread.interrupt_main`, which does nothing when SIGINT
    is ignored - as it is for a runner that starts pytest in the background (`cmd &` in a
    script). Python's own handler makes Ctrl-C raise KeyboardInterrupt however pytest was
    started; subprocesses start with SIGINT at its default again."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real weight cache or talks to a real mirror; and `auto`
    on the CPU runs eager without measuring (the ONNX and OpenVINO conversions it would make
    first take tens of seconds each): the tests that measure use `shared_engine_cache`."""
    monkeypatch.setenv("DERAIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("DERAIN_AUTO_CPU", "eager")
    monkeypatch.delenv("DERAIN_WEIGHTS_MIRROR", raising=False)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A one-stage BRN in the project's format: fast enough for CLI tests on a 2-core CPU."""
    # Imported here, not at the top: the video I/O tests run on an install without torch.
    from brns import plain_brn

    from derain.models import save_checkpoint

    return save_checkpoint(plain_brn(stages=1), tmp_path / "tiny.safetensors", training_data="random")


@pytest.fixture
def ctrl_c_in_sink_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Sink.close starts with a Ctrl-C, as a user pressing it again while the output is finalised."""
    from derain.stream.encode import Sink

    close = Sink.close

    def close_under_ctrl_c(self: Sink, remux_rest: bool = True) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered in the main thread before the next bytecode
        close(self, remux_rest)

    monkeypatch.setattr(Sink, "close", close_under_ctrl_c)


@pytest.fixture(scope="session")
def _engines_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def shared_engine_cache(_engines_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One project cache for the tests that build ONNX and OpenVINO engines: each export or
    conversion of a model takes tens of seconds on a 2-core CPU, and is made once a session.
    `auto` measures every installed backend there."""
    monkeypatch.setenv("DERAIN_CACHE", str(_engines_root))
    monkeypatch.delenv("DERAIN_AUTO_CPU")
    return _engines_root
