"""The inference stage's pipelined (CUDA) path, run on the CPU with stand-in streams and events."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from stand_ins import IdentityEngine
from videos import make_video

from derain.stream.decode import Frame, frames, open_source
from derain.stream.pipeline import CudaStreams, InferenceStage
from derain.stream.stats import Stats


class FakeEvent:
    """A CUDA event whose work finishes only when the host waits for it, or when the test says."""

    def __init__(self, gpu: FakeStreams) -> None:
        self.gpu, self.waited = gpu, False

    def record(self, stream: object = None) -> None:
        self.waited = False

    def query(self) -> bool:
        return self.waited or self.gpu.idle

    def synchronize(self) -> None:
        self.waited = True

    def elapsed_time(self, end: FakeEvent) -> float:
        return 0.0


class FakeStream:
    def wait_event(self, event: FakeEvent) -> None:
        pass


class FakeStreams(CudaStreams):
    def __init__(self) -> None:
        self.idle = False  # True: all work queued so far has finished

    def stream(self) -> FakeStream:  # type: ignore[override]
        return FakeStream()

    def event(self, enable_timing: bool = False, blocking: bool = False) -> FakeEvent:  # type: ignore[override]
        return FakeEvent(self)

    def use(self, stream: object) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        self.idle = True


@pytest.fixture
def clip_frames(tmp_path: Path) -> tuple:
    source = open_source(make_video(tmp_path / "clip.mp4", frames=4))
    yield source, list(frames(source))
    source.close()


def stage(source: object, depth: int, gpu: FakeStreams) -> InferenceStage:
    return InferenceStage(IdentityEngine(), source, source.color, 1, False, False, Stats(), depth=depth, streams=gpu)


def test_one_slot_hands_each_result_back_from_its_own_submit(clip_frames: tuple) -> None:
    """A live job (depth 1) must not hold a derained frame until the next frame's submit."""
    source, decoded = clip_frames
    gpu = FakeStreams()
    one = stage(source, 1, gpu)
    for frame in decoded:
        results = one.submit([Frame(frame.planes, frame.pts, frame.index)])
        assert [r.pts for r in results] == [[frame.pts]]
    assert one.drain() == []


def test_finished_batches_come_back_at_the_next_submit_without_waiting_for_their_slot(clip_frames: tuple) -> None:
    source, decoded = clip_frames
    gpu = FakeStreams()
    two = stage(source, 2, gpu)
    assert two.submit([decoded[0]]) == []  # still running: the host does not wait for it
    gpu.idle = True  # the GPU catches up
    assert [r.pts for r in two.submit([decoded[1]])] == [[decoded[0].pts], [decoded[1].pts]]
    assert two.drain() == []
