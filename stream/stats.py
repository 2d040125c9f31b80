"""Counting frames and stage time, the closing table and the JSON summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

# Stages in pipeline order. `batch` copies decoded planes into the batch buffers (pinned
# on CUDA); `upload`/`download` are the host<->GPU copies (CUDA only); `convert` is
# YUV<->RGB on the engine's device.
STAGES = ("decode", "batch", "upload", "convert", "engine", "download", "encode")
# Stages only some jobs have (`temporal`: fusing frames with their neighbours) appear once used.


class Stats:
    """Busy seconds per stage and frame counts; stages run on different threads, so each
    stage's time is how long that stage worked, and the largest one is the bottleneck."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.decoded = 0
        self.written = 0
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class VideoReport:
    """What a job did; `to_dict()` is the `--json` document."""

    input: str
    output: str
    frames: int
    seconds: float
    stages: dict[str, float]
    width: int
    height: int
    codec: str
    pixel_format: str
    engine: dict[str, str] = field(default_factory=dict)
    passthrough_packets: int = 0
    corrupt_packets: int = 0  # video packets the decoder rejected, skipped as ffmpeg skips them
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" when a signal stopped the job
    error: str | None = None  # a fatal error mid-file, after which the output was finalised
    output_kept: bool = True
    exception: BaseException | None = field(default=None, repr=False)  # behind `error`, for a traceback

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.interrupted is None and self.error is None

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "output": self.output if self.output_kept else None,
            "frames": self.frames,
            "seconds": round(self.seconds, 4),
            "fps": round(self.fps, 3),
            "size": [self.width, self.height],
            "codec": self.codec,
            "pixel_format": self.pixel_format,
            "engine": self.engine,
            "passthrough_packets": self.passthrough_packets,
            "corrupt_packets": self.corrupt_packets,
            "stages": {
                name: {"seconds": round(sec, 4), "ms_per_frame": round(1000 * sec / self.frames, 3) if self.frames else None}
                for name, sec in self.stages.items()
            },
            "complete": self.complete,
            "interrupted": self.interrupted,
            "error": self.error,
        }

    def table(self) -> Table:
        table = Table(title=f"{self.frames} frames in {self.seconds:.2f} s: {self.fps:.2f} fps")
        for column in ("stage", "busy (s)", "ms/frame", "share of wall time"):
            table.add_column(column, justify="right" if column != "stage" else "left")
        busiest = max(self.stages, key=lambda name: self.stages[name])
        for name, sec in self.stages.items():
            if sec == 0.0 and name in ("upload", "download"):
                continue
            per_frame = f"{1000 * sec / self.frames:.1f}" if self.frames else "-"
            share = f"{100 * sec / self.seconds:.0f}%" if self.seconds > 0 else "-"
            label = Text(f"{name} (bottleneck)", style="bold") if name == busiest and sec > 0 else name
            table.add_row(label, f"{sec:.2f}", per_frame, share)
        return table


@contextmanager
def periodic(seconds: float, tick: Callable[[], None], name: str) -> Iterator[None]:
    """Call `tick` every `seconds` on a thread of its own while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(seconds):
            tick()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
