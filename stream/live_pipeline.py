"""The live pipeline: a camera or network stream derained as it comes, with bounded latency.

    reader thread  (owns the input container: opens, reads, reconnects, closes it)
      -> FrameBuffer (newest frames; the oldest go when it is full)
      -> inference   (the calling thread, so Ctrl-C reaches it: InferenceStage, batch 1)
      -> output thread (with --temporal K: fuses each frame with the K-1 before it, causally,
                        adding no frames of delay; writes the sinks: recording, re-stream, preview)

Which frames are derained and when they are dropped is schedule.py's policy; the threads,
the stop and the finalising are runtime.py's. Every frame in is at any moment out, dropped,
or in flight (in the buffer, the engine or the output queue), and the counts say so.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from derain.engines import Engine
from derain.models.errors import InputError
from derain.models.temporal import check_temporal
from derain.stream.decode import Source, frames
from derain.stream.encode import EncodeOptions, Sink
from derain.stream.pipeline import InferenceStage, Result
from derain.stream.runtime import MIDFILE_ERRORS, Outcome, Runtime, SharedSink, get, join, message, put
from derain.stream.schedule import TIME_BASE, FrameBuffer, LiveFrame, Pace, Thinning, Timeline
from derain.stream.sources import Backoff, LiveSource, SourceUnavailable, describe, open_live
from derain.stream.stats import Stats, periodic
from derain.stream.temporal import TemporalFilter

LATENCY_BINS = 10_000  # 1 ms bins; the last holds everything slower
STABLE_SECONDS = 10.0  # up this long after a reconnect, a source has its `reconnect_max` tries back
DROP_POLICIES = ("oldest", "every-nth")
__all__ = ["DROP_POLICIES", "TIME_BASE", "FrameBuffer", "LiveError", "LiveFrame", "LiveJob", "LiveStats", "LiveReport",
           "Thinning", "Timeline", "json_lines", "restream_target", "run_live"]


class LiveError(InputError):
    """A live source or sink that cannot be used, or a source that did not come back."""


@dataclass(frozen=True)
class LiveJob:
    source: LiveSource
    output: Path | None = None
    restream: str | None = None
    timeout: float = 5.0  # seconds for every open and every read
    reconnect_max: int = 10
    max_latency: float = 0.5  # seconds from arrival to output
    drop_policy: str = "oldest"
    compare: bool = False
    # zerolatency: no B-frames or lookahead, so the encoder holds no frames back and a stop
    # flushes at once.
    encode: EncodeOptions = EncodeOptions(tune="zerolatency")
    overwrite: bool = False
    backoff_first: float = 0.5
    temporal: int = 1  # frames fused per output frame: this one and the K-1 before it (odd; 1: off)
    fusion: str = "rain"


class LiveStats(Stats):
    """Stats plus what a live job reports: drops, reconnects, state and latency percentiles.

    The reader, inference and output threads all change these counts: they do it through
    `count`, under the lock, and `snapshot` reads them under it, so that every snapshot adds up
    (frames in = out + dropped + in flight) and no update is lost between threads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self.in_flight = 0  # taken in, neither out nor dropped yet (at the end: abandoned by the stop)
        self.corrupt_packets = 0  # skipped by the decoder, as ffmpeg skips them
        self.reconnects = 0
        self.state = "connecting"
        self.detail = ""
        self._histogram = np.zeros(LATENCY_BINS, np.int64)
        self._recent: collections.deque[float] = collections.deque(maxlen=250)
        self._counts: collections.deque[tuple[float, int, int]] = collections.deque()  # (time, in, out) samples
        self._changes: list[Callable[[str, str], None]] = []

    def on_change(self, callback: Callable[[str, str], None]) -> None:
        self._changes.append(callback)

    def set_state(self, state: str, detail: str = "") -> None:
        with self._lock:
            self.state, self.detail = state, detail
        self._changed(state, detail)

    def note(self, detail: str) -> None:
        """A new detail for the current state (a warning), leaving the state as it is."""
        with self._lock:
            self.detail = detail
            state = self.state
        self._changed(state, detail)

    def _changed(self, state: str, detail: str) -> None:
        for callback in self._changes:
            callback(state, detail)

    def count(self, **deltas: int) -> None:
        """Change counts together, e.g. count(written=1, in_flight=-1) as a frame comes out."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def drop(self, count: int = 1) -> None:
        self.count(dropped=count)

    def latency(self, seconds: float) -> None:
        ms = seconds * 1000
        with self._lock:
            self._histogram[min(int(ms), LATENCY_BINS - 1)] += 1
            self._recent.append(ms)

    def percentiles(self, recent: bool = False) -> dict[str, float | None]:
        """p50/p95/p99 in ms: over the last 250 frames, or over the whole job (to 1 ms)."""
        with self._lock:
            if recent:
                values = np.array(self._recent)
                if not len(values):
                    return dict.fromkeys(("p50", "p95", "p99"))
                return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}
            counts = self._histogram.copy()
        total = int(counts.sum())
        if not total:
            return dict.fromkeys(("p50", "p95", "p99"))
        cumulative = np.cumsum(counts)
        return {f"p{q}": float(np.searchsorted(cumulative, math.ceil(total * q / 100)) + 1) for q in (50, 95, 99)}

    def rates(self, window: float = 3.0) -> tuple[float, float]:
        """Frames per second in and out over the last `window` seconds (not since the start,
        which would count the model loading and any reconnect gap)."""
        now = time.perf_counter()
        with self._lock:
            decoded, written = self.decoded, self.written
            self._counts.append((now, decoded, written))
            while len(self._counts) > 2 and now - self._counts[1][0] >= window:
                self._counts.popleft()
            then, decoded_then, written_then = self._counts[0]
        span = now - then
        return ((decoded - decoded_then) / span, (written - written_then) / span) if span > 0 else (0.0, 0.0)

    def snapshot(self, recent: bool = True) -> dict:
        """The `--json` line: counts since the start; rates and latency over the last few seconds
        (`recent`), or latency over the whole job."""
        latency = self.percentiles(recent)
        elapsed = self.elapsed
        with self._lock:
            counts = {"state": self.state, "frames_in": self.decoded, "frames_out": self.written, "dropped": self.dropped,
                      "in_flight": self.in_flight, "corrupt_packets": self.corrupt_packets, "reconnects": self.reconnects}
        fps_in, fps_out = self.rates() if recent else (counts["frames_in"] / elapsed, counts["frames_out"] / elapsed)
        return {
            "time": round(time.time(), 3), "seconds": round(elapsed, 3), **counts,
            "fps_in": round(fps_in, 2), "fps_out": round(fps_out, 2),
            **{f"latency_ms_{k}": v for k, v in latency.items()},
        }


@dataclass
class LiveReport:
    """How a live job ended; `to_dict()` is the last line of `--json`."""

    source: str
    output: str | None
    restream: str | None
    stats: dict
    stopped_by: str = "end of stream"  # or SIGINT, SIGTERM, error
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    recording_written: bool = False  # `output` exists and holds at least one frame
    exception: BaseException | None = field(default=None, repr=False)  # behind `error`, for a traceback

    def to_dict(self) -> dict:
        return {"final": True, "source": self.source, "output": self.output, "restream": self.restream,
                "recording_written": self.recording_written, **self.stats, "stopped_by": self.stopped_by,
                "error": self.error, "warnings": self.warnings}


def restream_target(url: str, timeout: float) -> tuple[str, str, dict[str, str]]:
    """(URL to open, muxer, muxer options) for --restream: RTSP publish, or MPEG-TS over UDP/TCP."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    micros = str(int(timeout * 1_000_000))
    join = "&" if "?" in url else "?"
    if scheme in ("rtsp", "rtsps"):
        return url, "rtsp", {"rtsp_transport": "tcp", "timeout": micros}
    if scheme == "udp":
        # 7 TS packets a datagram: fits an Ethernet MTU, as players expect.
        return url if "pkt_size" in url else f"{url}{join}pkt_size=1316", "mpegts", {}
    if scheme == "tcp":
        return url if "timeout" in url else f"{url}{join}timeout={micros}", "mpegts", {}
    raise LiveError(f"restream={url!r}: give rtsp://HOST:PORT/PATH (publish), udp://HOST:PORT or tcp://HOST:PORT (MPEG-TS)")


def _same_picture(first: Source, again: Source) -> bool:
    return (again.width, again.height, again.layout.format) == (first.width, first.height, first.layout.format)


def check_live_job(job: LiveJob) -> None:
    """Every refusal that needs neither the model nor the source: options, paths, the re-stream URL."""
    check_temporal(job.temporal, job.fusion)
    if job.drop_policy not in DROP_POLICIES:
        raise LiveError(f"drop_policy={job.drop_policy!r}: choose one of {', '.join(DROP_POLICIES)}")
    if job.timeout <= 0 or job.max_latency <= 0 or job.reconnect_max < 0:
        raise LiveError("`timeout` and `max_latency` must be above 0, `reconnect_max` 0 or more")
    if job.output is not None:
        if job.output.exists() and not job.overwrite:
            raise FileExistsError(f"{job.output}: already exists; pass overwrite=True to replace it")
        if not job.output.parent.is_dir():
            raise FileNotFoundError(f"{job.output.parent}: no such folder for the recording")
    if job.restream is not None:
        restream_target(job.restream, job.timeout)  # a malformed URL is refused before the source is opened


def run_live(
    job: LiveJob,
    engine: Engine,
    stats: LiveStats | None = None,
    on_start: Callable[[Source], contextlib.AbstractContextManager] | None = None,
    preview: Callable[[np.ndarray], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveReport:
    """Derain `job.source` until it ends for good, gives up reconnecting, or is stopped: by
    Ctrl-C (KeyboardInterrupt), SIGTERM (`Terminated`) or another thread setting `stop`.

    How it stopped comes back as `stopped_by` ("SIGINT", "SIGTERM", "stop", ...); the
    recording is finalised in every case. Errors before the first frame
    (a source that cannot be opened, an unusable sink) raise LiveError.
    """
    check_live_job(job)
    stats = stats or LiveStats()
    source = _open_first(job, stop)
    if source is None:
        output = str(job.output) if job.output else None
        return LiveReport(job.source.text, output, job.restream, stats.snapshot(recent=False), stopped_by="stop")
    try:
        recording, restream = _open_sinks(job, source)
    except BaseException:
        source.close()
        raise
    try:
        live = _Live(job, engine, stats, source, recording, restream, preview)
    except BaseException:
        _discard([recording, restream])
        source.close()
        raise
    return live.run(on_start, stop)


def _open_first(job: LiveJob, stop: threading.Event | None = None) -> Source | None:
    """Open the source on a helper thread, so that neither Ctrl-C nor the caller's `stop` (then
    None comes back) is held up by an open that waits up to `timeout` on a silent peer. A source
    that opens after the caller gave up is closed by the helper: the caller never touches a
    container the helper is inside."""
    result: dict[str, object] = {}
    lock = threading.Lock()

    def attempt() -> None:
        try:
            opened: object = open_live(job.source, job.timeout)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            opened = err
        with lock:
            if result.get("abandoned"):
                if isinstance(opened, Source):
                    opened.close()
                return
            result["opened"] = opened

    opener = threading.Thread(target=attempt, name="derain-live-open", daemon=True)
    opener.start()
    def abandon() -> None:
        with lock:
            result["abandoned"] = True
            opened = result.get("opened")
            if isinstance(opened, Source):
                opened.close()

    try:
        while opener.is_alive():
            if stop is not None and stop.wait(0.1):
                abandon()
                return None
            opener.join(0.1)
    except BaseException:
        abandon()
        raise
    opened = result["opened"]
    if isinstance(opened, SourceUnavailable):
        raise LiveError(str(opened)) from None
    if isinstance(opened, BaseException):
        raise opened
    return opened


def _discard(sinks: list[Sink | None]) -> None:
    """Close sinks that never got a frame and remove the files among them: nothing was recorded."""
    for sink in sinks:
        if sink is None:
            continue
        with contextlib.suppress(Exception):
            sink.close()
        if isinstance(sink.path, Path):
            sink.path.unlink(missing_ok=True)


def _open_sinks(job: LiveJob, source: Source) -> tuple[Sink | None, Sink | None]:
    """The recording and the re-stream, each None when not asked for."""
    width = source.width * (2 if job.compare else 1)
    sinks: list[Sink] = []
    recording = restream = None
    try:
        if job.output is not None:
            recording = Sink(job.output, source, job.encode, width, time_base=TIME_BASE, passthrough=False)
            sinks.append(recording)
        if job.restream is not None:
            url, muxer, options = restream_target(job.restream, job.timeout)
            restream_options = EncodeOptions(codec="libx264", preset="ultrafast", tune="zerolatency",
                                             bitrate=job.encode.bitrate)
            sink = Sink(url, source, restream_options, width, time_base=TIME_BASE, format=muxer,
                        container_options=options, passthrough=False)
            sink.path = job.restream  # messages name the URL as given
            sinks.append(sink)
            restream = sink
            try:
                sink.container.start_encoding()  # connects now: a refused re-stream is an error before any work
            except (av.error.FFmpegError, OSError) as err:
                raise LiveError(f"restream={job.restream!r}: {describe(err)}") from None
        if len({s.layout.format for s in sinks}) > 1:
            raise LiveError(f"output={str(job.output)!r}: its encoder takes {sinks[0].layout.format}, the re-stream {sinks[1].layout.format}; record to .mkv or .mp4")
    except BaseException:
        _discard(sinks)
        raise
    return recording, restream


class _Live:
    """One run of the live pipeline; see the module docstring for its threads."""

    def __init__(self, job: LiveJob, engine: Engine, stats: LiveStats, source: Source, recording: Sink | None,
                 restream: Sink | None, preview: Callable[[np.ndarray], None] | None) -> None:
        self.job, self.engine, self.stats, self.first, self.preview = job, engine, stats, source, preview
        self.recording = SharedSink(recording) if recording is not None else None
        self.restream = SharedSink(restream) if restream is not None else None
        self.runtime = Runtime()
        self.stop = self.runtime.stop
        rate = float(source.rate or 25)
        # Room for the frames of half the latency budget: absorbs network bursts without adding delay.
        self.buffer = FrameBuffer(max(2, min(64, math.ceil(rate * job.max_latency / 2))), self._pushed_out)
        self.results: queue.Queue = queue.Queue(maxsize=2)
        self.arrivals: dict[int, float] = {}
        self.timeline = Timeline(stats.started)
        self.thinning = Thinning() if job.drop_policy == "every-nth" else None
        self.pace = Pace(job.max_latency, self.thinning)
        sink = recording or restream
        out_color = sink.color if sink is not None else source.color
        # One batch in flight: a live frame must leave as soon as it is derained, not when the
        # next one arrives to push it out of the second slot.
        self.stage = InferenceStage(engine, source, out_color, 1, job.compare, preview is not None, stats, depth=1,
                                    removed=job.temporal > 1)
        self.fusion = (TemporalFilter(job.temporal, out_color, job.fusion, source.width if job.compare else 0, causal=True)
                       if job.temporal > 1 else None)
        self.warnings: list[str] = []
        self._warnings_lock = threading.Lock()
        self.end_reason: str | None = None  # set by the reader when the source is gone for good
        self.stopped_by_caller = False
        self.read_failure: Exception | None = None  # a played file that broke: reported once its frames are out
        self.reader = self.runtime.worker("derain-live-read", self.read)
        self.writer = self.runtime.worker("derain-live-output", self.output)

    def _pushed_out(self) -> None:
        self.stats.count(dropped=1, in_flight=-1)

    # -- reader thread -------------------------------------------------------------------
    def read(self) -> None:
        source: Source | None = self.first
        backoff, tries = Backoff(self.job.backoff_first), 0
        try:
            while source is not None and not self.stop.is_set():
                connected = time.monotonic()
                # A played file that fails mid-way still delivers what was read before it, then the error.
                try:
                    failed = self._pull(source)
                except InputError as err:
                    if self.job.source.reconnects:
                        raise
                    self.read_failure = err
                    return
                if self.stop.is_set():
                    return
                if not self.job.source.reconnects:
                    if failed is not None:
                        self.read_failure = LiveError(f"{self.job.source.text}: {failed}")
                    else:
                        self.end_reason = f"{self.job.source.text}: end of file"
                    return
                reason = failed or "the source ended its stream (closed at the other end)"
                if self.job.reconnect_max == 0:
                    self.end_reason = f"{self.job.source.text}: {reason} (reconnect_max=0)"
                    return
                # A source that comes back only to drop again at once uses up the same tries:
                # the count and the backoff start over only after it has stayed up a while.
                if time.monotonic() - connected >= STABLE_SECONDS:
                    backoff, tries = Backoff(self.job.backoff_first), 0
                source, tries = self._reconnect(reason, backoff, tries)
        finally:
            self.buffer.close()

    def _pull(self, source: Source) -> str | None:
        """Feed frames from `source` until it ends or fails; close it; say why it failed (None: it ended)."""
        self.timeline.restart()
        self.stats.set_state("live", f"{source.width}x{source.height} {float(source.rate or 0):.3g} fps")
        realtime = self.job.source.kind == "file"
        paced_from: tuple[float, float] | None = None
        failed = None
        try:
            for frame in frames(source):
                seconds = float(frame.pts * source.time_base)
                if realtime:
                    # Play a file at its own rate: wait until this frame's time comes.
                    paced_from = paced_from or (time.perf_counter(), seconds)
                    if self.stop.wait(max(0.0, paced_from[0] + seconds - paced_from[1] - time.perf_counter())):
                        break
                arrival = time.perf_counter()
                if self.thinning is not None and not self.thinning.keep(arrival):
                    self.stats.count(decoded=1, dropped=1)
                    continue
                self.stats.count(decoded=1, in_flight=1)
                pts = self.timeline.pts(seconds, arrival)
                self.buffer.put(LiveFrame(frame.planes, pts, frame.index, arrival))
                if self.stop.is_set():
                    break
        except InputError:
            raise
        except (av.error.FFmpegError, OSError) as err:
            failed = describe(err)
        finally:
            self.stats.count(corrupt_packets=source.corrupt_packets)
            source.close()  # only this thread ever touches the input container
        return failed

    def _reconnect(self, reason: str, backoff: Backoff, tries: int) -> tuple[Source | None, int]:
        """Open the source again, backing off between tries, `tries` of them already used;
        the source and the tries used, or None when stopped meanwhile."""
        while tries < self.job.reconnect_max:
            tries += 1
            delay = backoff.next()
            self.stats.set_state("reconnecting", f"{reason}; try {tries}/{self.job.reconnect_max} in {delay:.1f} s")
            if self.stop.wait(delay):
                return None, tries
            try:
                source = open_live(self.job.source, self.job.timeout)
            except SourceUnavailable as err:
                reason = str(err)
                continue
            if not _same_picture(self.first, source):
                source.close()
                raise LiveError(
                    f"{self.job.source.text}: came back as {source.width}x{source.height} {source.layout.format}, "
                    f"it was {self.first.width}x{self.first.height} {self.first.layout.format}; the sinks cannot change size"
                )
            self.stats.count(reconnects=1)
            return source, tries
        raise LiveError(f"{self.job.source.text}: gave up after {self.job.reconnect_max} reconnect tries (`reconnect_max`); last: {reason}")

    # -- inference (calling thread) ----------------------------------------------------------
    def infer(self) -> None:
        try:
            self._infer()
        finally:
            self.stage.settle()

    def _infer(self) -> None:
        warned = False
        while not self.stop.is_set():
            frame, newer, done = self.buffer.get(0.1)
            if done:
                break
            if frame is None:
                continue
            now = time.perf_counter()
            if self.pace.late(frame.arrival, now, newer):
                self.stats.count(dropped=1, in_flight=-1)  # it would come out too late, and a newer frame waits
                continue
            if self.pace.over_budget() and not warned:
                warned = True
                self._warn(f"the engine takes {1000 * self.pace.busy:.0f} ms a frame, over `max_latency` ({1000 * self.job.max_latency:.0f} ms)")
            self.arrivals[frame.pts] = frame.arrival
            for result in self.stage.submit([frame]):
                if not put(self.results, result, self.stop):
                    return
            self.pace.inferred(time.perf_counter() - now)
        for result in self.stage.drain():
            put(self.results, result, self.stop)

    # -- output thread -----------------------------------------------------------------------
    def output(self) -> None:
        while True:
            item = get(self.results, self.stop)
            if not isinstance(item, Result):
                return
            start = time.perf_counter()
            self._write(item)
            self.pace.wrote((time.perf_counter() - start) / max(1, len(item.pts)))

    def _write(self, result: Result) -> None:
        for i, (pts, planes) in enumerate(zip(result.pts, result.planes)):
            if self.fusion is not None:
                with self.stats.time("temporal"):
                    # Causal: the frame itself comes back at once, fused with those before it.
                    [(pts, planes)] = self.fusion.push(pts, planes, result.removed[i] if result.removed is not None else None)
            if self.recording is not None:
                with self.stats.time("encode"):
                    self.recording.write(planes, pts)
            if self.restream is not None:
                try:
                    self.restream.write(planes, pts)
                except (av.error.FFmpegError, OSError) as err:
                    # The clean feed going away must not stop the recording.
                    self._warn(f"restream={self.restream.path!r}: {describe(err)}; re-streaming stopped")
                    with contextlib.suppress(av.error.FFmpegError, OSError):
                        self.restream.close()
            if self.preview is not None and result.preview is not None:
                self.preview(result.preview[i])
            arrival = self.arrivals.pop(pts, None)
            if arrival is not None:
                self.stats.latency(time.perf_counter() - arrival)
            self.stats.count(written=1, in_flight=-1)

    def _warn(self, text: str) -> None:
        with self._warnings_lock:
            self.warnings.append(text)
        self.stats.note(text)

    # -- the whole run -------------------------------------------------------------------------
    def run(self, on_start: Callable[[Source], contextlib.AbstractContextManager] | None,
            stop: threading.Event | None = None) -> LiveReport:
        job = self.job
        summary = LiveReport(job.source.text, str(job.output) if job.output else None, job.restream, {})
        context = on_start(self.first) if on_start else contextlib.nullcontext()
        watcher = threading.Thread(target=self._watch, args=(stop,), name="derain-live-stop", daemon=True) if stop else None
        if watcher is not None:
            watcher.start()
        outcome = self.runtime.run(context, self._main, self._finish, second_sigint_forces=True)
        if watcher is not None:
            watcher.join()
        failure = outcome.failure
        if failure is not None:
            if not outcome.started or not isinstance(failure, MIDFILE_ERRORS):
                raise failure  # before the first frame: the caller's one-line error
            summary.stopped_by = "error"
            summary.error, summary.exception = message(failure), failure
        elif outcome.signal is not None:
            summary.stopped_by = outcome.signal
        elif self.stopped_by_caller:
            summary.stopped_by = "stop"
        elif self.end_reason:
            summary.stopped_by = self.end_reason
        summary.stats = self.stats.snapshot(recent=False)
        summary.warnings = self.warnings
        summary.recording_written = job.output is not None and self.recording is not None and self.recording.frames > 0 and job.output.exists()
        return summary

    def _watch(self, stop: threading.Event) -> None:
        """The caller's `stop` stops the job; the thread ends with the job either way."""
        while not self.stop.is_set():
            if stop.wait(0.1):
                self.stopped_by_caller = True
                self.stop.set()

    def _main(self) -> None:
        if self.job.source.kind == "file":
            # A played file waits for its reader, so the first call's cost is best paid
            # before pacing starts; a network source keeps sending meanwhile, and would
            # arrive as a burst whose timestamps run ahead of the clock.
            self.stage.warm_up(self.first.first_planes())
        self.runtime.start()
        self.infer()
        self.runtime.end_output(self.results, self.writer)

    def _finish(self, outcome: Outcome) -> None:
        """Stop the threads and finalise both sinks, whatever ended the job.

        The output thread is given `timeout` to finish its frame: a sink that stops taking
        frames (a network peer that stopped reading) is then left to finish on its own, and
        the other sink is finalised all the same.
        """
        self.stats.set_state("stopping")
        written = join(self.writer, self.job.timeout)
        stuck = []
        for sink, label in ((self.recording, str(self.job.output)), (self.restream, f"the re-stream to {self.job.restream}")):
            if sink is None:
                continue
            try:
                with self.stats.time("encode"):
                    if not sink.close(None if written else 0.0):
                        stuck.append(label)
            except (av.error.FFmpegError, OSError) as err:
                # One sink failing to finish must not keep the other from finishing.
                outcome.failure = outcome.failure or LiveError(f"{sink.path}: could not be finalised ({describe(err)})")
        if not written:
            self._warn(f"output to {' and '.join(stuck) or 'the preview'} did not finish within `timeout` ({self.job.timeout:g} s); not waited for")
        if self.recording is not None and self.recording.frames == 0 and self.job.output is not None:
            self.job.output.unlink(missing_ok=True)  # nothing was recorded
        if self.reader.ident is None:
            self.first.close()  # stopped before the reader took the source over
        else:
            # The reader notices the stop between frames; one blocked on a silent peer gives
            # up at its read timeout. Its container is its own: the sinks need not wait for it.
            join(self.reader, min(1.0, self.job.timeout))
        outcome.failure = outcome.failure or self.runtime.error() or self.read_failure
        self.stats.set_state("stopped")


@contextlib.contextmanager
def json_lines(path: Path, stats: LiveStats, every: float = 1.0) -> Iterator[Callable[[dict], None]]:
    """Append one stats object per `every` seconds to `path`; yields a writer for the last line."""
    lock = threading.Lock()
    with path.open("a", encoding="utf-8") as out:

        def write(record: dict) -> None:
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()

        with periodic(every, lambda: write(stats.snapshot()), "derain-live-json"):
            yield write
