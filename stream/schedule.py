"""The live scheduling policy: which frames to derain so that none comes out later than the
latency budget, and where each lands on the job's clock.

Latency is bounded by dropping, never by queueing: a frame that would be output later than
the budget after it arrived is dropped while a newer one waits, and the `every-nth` policy
thins the input to the rate the engine keeps up with. Output timestamps are on one clock for
the whole job (90 kHz ticks since it started): each connection's own pts are anchored to
the time its first frame arrived, so a recording or re-stream goes on across a reconnect
with monotonic timestamps and the gap where it really was.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from derain.stream.decode import Frame

TIME_BASE = Fraction(1, 90_000)  # MPEG-TS and RTP's clock; MP4 and Matroska take it as well
RESYNC_S = 1.0  # a source clock further than this from arrival time is re-anchored


@dataclass
class LiveFrame(Frame):
    arrival: float = 0.0  # time.perf_counter() when the decoder handed the frame over


class FrameBuffer:
    """The reader's frames waiting for inference, oldest first. When it is full a new frame
    pushes out the oldest (and reports it to `on_drop`): the reader never waits on inference."""

    def __init__(self, size: int, on_drop: Callable[[], None]) -> None:
        self._frames: collections.deque[LiveFrame] = collections.deque()
        self.size, self.on_drop = size, on_drop
        self._ready = threading.Condition()
        self._closed = False

    def put(self, frame: LiveFrame) -> None:
        with self._ready:
            if len(self._frames) >= self.size:
                self._frames.popleft()
                self.on_drop()
            self._frames.append(frame)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def get(self, timeout: float) -> tuple[LiveFrame | None, bool, bool]:
        """(the oldest frame or None, whether a newer one waits, whether all frames are taken)."""
        with self._ready:
            if not self._frames and not self._closed:
                self._ready.wait(timeout)
            frame = self._frames.popleft() if self._frames else None
            return frame, bool(self._frames), frame is None and self._closed


class Timeline:
    """Maps each connection's pts (seconds) onto the job's clock (TIME_BASE ticks from `t0`)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.anchor: float | None = None  # job seconds at which this connection's pts 0 falls
        self.last = -1

    def restart(self) -> None:
        self.anchor = None

    def pts(self, seconds: float, arrival: float) -> int:
        now = arrival - self.t0
        if self.anchor is None or abs(self.anchor + seconds - now) > RESYNC_S:
            self.anchor = now - seconds
        tick = max(self.last + 1, round((self.anchor + seconds) / TIME_BASE))
        self.last = tick
        return tick


class Thinning:
    """The every-nth policy: keep one frame in n, n following how far the engine falls behind."""

    def __init__(self) -> None:
        self.interval = 0.0  # seconds between arrivals (moving average)
        self.busy = 0.0  # seconds of inference and output per frame (moving average)
        self._last: float | None = None
        self._count = 0

    def keep(self, arrival: float) -> bool:
        if self._last is not None:
            self.interval = 0.9 * self.interval + 0.1 * (arrival - self._last) if self.interval else arrival - self._last
        self._last = arrival
        n = max(1, math.ceil(self.busy / self.interval)) if self.interval > 0 else 1
        self._count += 1
        return (self._count - 1) % n == 0


class Pace:
    """What a frame costs from the moment inference takes it to its output, and the drops that
    keep that under `max_latency`.

    Two moving averages, each written by one thread alone: `output` by the output thread (its
    time per frame), `busy` by the inference thread (its own time plus the output's).
    """

    def __init__(self, max_latency: float, thinning: Thinning | None) -> None:
        self.max_latency, self.thinning = max_latency, thinning
        self.busy = 0.0
        self.output = 0.0
        self._first = True

    def late(self, arrival: float, now: float, newer: bool) -> bool:
        """Whether a frame taken at `now` would come out too late while a newer one waits."""
        return newer and now - arrival + self.busy > self.max_latency

    def over_budget(self) -> bool:
        return self.busy > self.max_latency

    def inferred(self, seconds: float) -> None:
        if self._first:
            self._first = False  # the first call warms the engine up (allocations, autotuning): not its pace
            return
        spent = seconds + self.output
        self.busy = 0.8 * self.busy + 0.2 * spent if self.busy else spent
        if self.thinning is not None:
            self.thinning.busy = self.busy

    def wrote(self, seconds: float) -> None:
        self.output = 0.8 * self.output + 0.2 * seconds if self.output else seconds
