"""Decode thread -> batcher -> inference stage -> encode thread, a bounded queue between each.

A slow stage blocks the one before it instead of letting memory grow, and no frame is ever
dropped from a file job. The inference stage runs on the calling thread, so Ctrl-C reaches
it directly; it then stops the other stages and finalises the output.

On CUDA the inference stage keeps two batches in flight: batch k+1 is copied from pinned host
memory to the GPU on a copy stream while batch k is converted and derained on a compute
stream. Frames cross the bus as their coded YUV planes (1.5 bytes a pixel for 8-bit 4:2:0, not
12 for float RGB) and are converted on the GPU. On the CPU the same code runs without streams.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from derain.engines import Engine
from derain.models.errors import OutputError
from derain.models.temporal import LUMA, check_temporal
from derain.stream.color import from_rgb, host_codes, to_rgb
from derain.stream.decode import Frame, Source, frames, open_source
from derain.stream.encode import EncodeOptions, Sink
from derain.stream.pixels import ColorSpec
from derain.stream.runtime import END, MIDFILE_ERRORS, Outcome, Runtime, get, join, message, put
from derain.stream.runtime import Terminated as Terminated  # the CLI imports it from here
from derain.stream.runtime import signals_deferred as signals_deferred  # the CLI imports it from here
from derain.stream.stats import Stats, VideoReport
from derain.stream.temporal import TemporalFilter


@dataclass(frozen=True)
class VideoJob:
    input: Path
    output: Path
    batch: int = 1
    start: float = 0.0
    duration: float | None = None
    compare: bool = False
    encode: EncodeOptions = EncodeOptions()
    overwrite: bool = False
    keep_partial: bool = True
    temporal: int = 1  # frames fused per output frame (odd; 1: off)
    fusion: str = "rain"


@dataclass
class Result:
    """A derained batch back on the host: per frame its pts and output planes."""

    pts: list[int]
    planes: list[list[np.ndarray]]
    preview: np.ndarray | None  # (B, H, W, 3) uint8 BGR when a display wants it
    removed: list[np.ndarray] | None = None  # per frame (H, W) float32 luma codes the model took away


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch's work on the calling thread alone for the block, then as before. For callers that
    choose it (benchmarks/pipeline_overhead.py): the thread count is process-wide, so the
    pipeline itself never changes it. On the CPU its YUV conversion runs in single-threaded
    numba kernels and needs no torch threads; what torch work is left (--compare, a preview,
    formats without a kernel) runs with the caller's setting, as the engine does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CudaStreams:
    """The CUDA streams, events and waits of the inference stage, in one place: a test can
    stand in for them and run the pipelined path on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def stream(self) -> torch.cuda.Stream:
        return torch.cuda.Stream(self.device)

    def event(self, enable_timing: bool = False, blocking: bool = False) -> torch.cuda.Event:
        return torch.cuda.Event(enable_timing=enable_timing, blocking=blocking)

    def use(self, stream: torch.cuda.Stream) -> contextlib.AbstractContextManager:
        return torch.cuda.stream(stream)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


class _Slot:
    """Buffers for one batch in flight: host planes (pinned on CUDA), device planes, events."""

    def __init__(self, source: Source, batch: int, device: torch.device, streams: CudaStreams | None) -> None:
        dtype = torch.uint8 if source.layout.bits <= 8 else torch.int16
        shapes = source.layout.plane_shapes(source.width, source.height)
        self.host = [torch.empty((batch, *shape), dtype=dtype, pin_memory=device.type == "cuda") for shape in shapes]
        self.device = [torch.empty_like(h, device=device) for h in self.host] if streams else self.host
        self.pts: list[int] = []
        self.out: list[torch.Tensor] = []
        self.preview: torch.Tensor | None = None
        self.removed: torch.Tensor | None = None
        self.marks: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        # Blocking: the host waits on it asleep rather than spinning a core the encoder needs.
        self.done = streams.event(blocking=True) if streams else None


class InferenceStage:
    """Runs batches through conversion and the engine, keeping up to `depth` of them in flight.

    `streams` defaults to the engine's CUDA device's; None elsewhere, where a batch is done
    when `submit` returns. With `removed`, each result also carries the luma the model took
    away from each frame (the rain fusion's evidence), computed on the engine's device.
    """

    def __init__(self, engine: Engine, source: Source, out_color: ColorSpec, batch: int, compare: bool,
                 preview: bool, stats: Stats, depth: int = 2, streams: CudaStreams | None = None,
                 removed: bool = False) -> None:
        self.engine, self.source, self.out_color = engine, source, out_color
        self.compare, self.preview, self.stats, self.removed = compare, preview, stats, removed
        device = engine.device
        self.streams = streams or (CudaStreams(device) if device.type == "cuda" else None)
        self.copy_stream = self.streams.stream() if self.streams else None
        self.compute_stream = self.streams.stream() if self.streams else None
        self.slots = [_Slot(source, batch, device, self.streams) for _ in range(depth if self.streams else 1)]
        self.next_slot = 0
        self.in_flight: list[_Slot] = []

    def _stream(self, stream: torch.cuda.Stream | None) -> contextlib.AbstractContextManager:
        return self.streams.use(stream) if self.streams and stream is not None else contextlib.nullcontext()

    def _mark(self, slot: _Slot, stage: str, stream: torch.cuda.Stream | None, work: Callable[[], None]) -> None:
        """Run `work` and account its time to `stage`: wall time on the CPU, CUDA events on a GPU."""
        if self.streams is None:
            start = time.perf_counter()
            work()
            self.stats.add(stage, time.perf_counter() - start)
            return
        begin, end = self.streams.event(enable_timing=True), self.streams.event(enable_timing=True)
        begin.record(stream)
        work()
        end.record(stream)
        slot.marks.append((stage, begin, end))

    def warm_up(self, planes: list[np.ndarray]) -> None:
        """Run one frame through conversion and the engine, untimed, and drop the result.

        The first call loads the conversion kernels and lets the engine allocate (0.4 s on a
        CPU); a file played as a live source would spend that time dropping frames.
        """
        stats, self.stats = self.stats, Stats()
        try:
            self.submit([Frame(planes, 0, 0)])
            self.drain()
        finally:
            self.stats = stats

    def submit(self, batch: list[Frame]) -> list[Result]:
        """Start `batch`; returns the batches that are done (oldest first), `batch` among them
        when it is (always on the CPU, and with one slot)."""
        finished = []
        slot = self.slots[self.next_slot]
        self.next_slot = (self.next_slot + 1) % len(self.slots)
        if slot in self.in_flight:
            # Its buffers are about to be reused: collect its result first.
            while self.in_flight:
                oldest = self.in_flight.pop(0)
                finished.append(self._collect(oldest))
                if oldest is slot:
                    break
        n = len(batch)
        slot.pts = [f.pts for f in batch]
        start = time.perf_counter()
        for k, host in enumerate(slot.host):
            for i, frame in enumerate(batch):
                plane = frame.planes[k]
                # numpy copies a row-strided view with plain memcpys; torch's strided copy is far slower here.
                np.copyto(host[i].numpy(), plane if plane.dtype.itemsize == 1 else plane.view(np.int16))
        self.stats.add("batch", time.perf_counter() - start)
        if self.streams and self.copy_stream and self.compute_stream:
            self._upload(slot, n, self.streams, self.copy_stream, self.compute_stream)
        with self._stream(self.compute_stream), torch.inference_mode():
            self._run(slot, n)
        self.in_flight.append(slot)
        return finished + self._ready(wait=len(self.slots) == 1)

    def _upload(self, slot: _Slot, n: int, streams: CudaStreams, copy: torch.cuda.Stream, compute: torch.cuda.Stream) -> None:
        """Copy the batch to the device on the copy stream; the compute stream waits for it."""

        def upload() -> None:
            for d, h in zip(slot.device, slot.host):
                d[:n].copy_(h[:n], non_blocking=True)

        with streams.use(copy):
            self._mark(slot, "upload", copy, upload)
            uploaded = streams.event()
            uploaded.record(copy)
        compute.wait_event(uploaded)

    def _ready(self, wait: bool) -> list[Result]:
        """The batches in flight that are done, oldest first, so that none waits for a later
        submit to leave. With `wait` (one slot: nothing to overlap with), wait for them."""
        finished = []
        while self.in_flight and (wait or self.in_flight[0].done is None or self.in_flight[0].done.query()):
            finished.append(self._collect(self.in_flight.pop(0)))
        return finished

    def _run(self, slot: _Slot, n: int) -> None:
        stream = self.compute_stream
        state: dict[str, Any] = {}

        def rgb_in() -> None:
            state["rgb"] = to_rgb([d[:n] for d in slot.device], self.source.color).to(self.engine.dtype)

        def derain() -> None:
            state["out"] = self.engine.run(state["rgb"])

        def rgb_out() -> None:
            out = state["out"]
            if self.removed:
                taken = state["rgb"].float().clamp(0, 1) - out.float().clamp(0, 1)
                state["removed"] = torch.einsum("bchw,c->bhw", taken, torch.from_numpy(LUMA).to(taken.device)) * 255.0
            if self.compare:
                out = torch.cat((state["rgb"].clamp(0, 1).to(out.dtype), out), dim=-1)
            state["planes"] = from_rgb(out, self.out_color)
            if self.preview:
                rgb = (out.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
                state["preview"] = rgb.flip(1).permute(0, 2, 3, 1)

        self._mark(slot, "convert", stream, rgb_in)
        self._mark(slot, "engine", stream, derain)
        self._mark(slot, "convert", stream, rgb_out)
        if slot.done is not None:
            # Download on the compute stream: the planes are small, and the copy stream stays
            # free for the next batch's upload.
            def download() -> None:
                slot.out = [p.to("cpu", non_blocking=True) for p in state["planes"]]
                slot.preview = state["preview"].to("cpu", non_blocking=True) if self.preview else None
                slot.removed = state["removed"].to("cpu", non_blocking=True) if self.removed else None

            self._mark(slot, "download", stream, download)
            slot.done.record(stream)
        else:
            slot.out = state["planes"]
            slot.preview = state.get("preview")
            slot.removed = state.get("removed")

    def _collect(self, slot: _Slot) -> Result:
        if slot.done is not None:
            slot.done.synchronize()
            for stage, begin, end in slot.marks:
                self.stats.add(stage, begin.elapsed_time(end) / 1000)
            slot.marks.clear()
        arrays = [host_codes(plane) for plane in slot.out]
        per_frame = [[a[i] for a in arrays] for i in range(len(slot.pts))]
        preview = slot.preview.numpy() if slot.preview is not None else None
        removed = list(slot.removed.numpy()) if slot.removed is not None else None
        return Result(list(slot.pts), per_frame, preview, removed)

    def drain(self) -> list[Result]:
        finished = [self._collect(slot) for slot in self.in_flight]
        self.in_flight.clear()
        return finished

    def settle(self) -> None:
        """Wait for the GPU work of a job that ends early: the slots' buffers were allocated on
        the default stream, and freeing them under a pending copy or kernel would let the
        allocator hand them out while still in use."""
        if self.streams is not None:
            self.streams.synchronize()


def check_paths(job: VideoJob) -> None:
    """Refuse to clobber: an existing output needs --overwrite, and never the input itself."""
    if job.output.exists() and job.input.exists() and job.output.resolve() == job.input.resolve():
        raise FileExistsError(f"{job.output}: is the input file; write the output somewhere else")
    if job.output.exists() and not job.overwrite:
        raise FileExistsError(f"{job.output}: already exists; pass overwrite=True to replace it")
    if not job.output.parent.is_dir():
        raise FileNotFoundError(f"{job.output.parent}: no such folder for the output")
    if job.batch < 1:
        raise OutputError(f"batch={job.batch}: must be at least 1")
    check_temporal(job.temporal, job.fusion)


def run_video(
    job: VideoJob,
    engine: Engine,
    stats: Stats | None = None,
    on_start: Callable[[Source, Sink], contextlib.AbstractContextManager] | None = None,
    preview: Callable[[np.ndarray], None] | None = None,
) -> VideoReport:
    """Derain `job.input` into `job.output` with `engine`.

    Whatever stops the job (end of file, Ctrl-C, SIGTERM, an error mid-file), the frames
    written so far are finalised into a playable file, or removed when `job.keep_partial` is
    False. A signal or a known error comes back in `VideoReport.interrupted` / `VideoReport.error`;
    anything else is re-raised once the output is finalised. `on_start` may return a context
    (a progress bar) that lives while frames flow; `preview` gets BGR uint8 frames.
    """
    check_paths(job)
    stats = stats or Stats()
    source = open_source(job.input, job.start, job.duration)
    try:
        sink = Sink(job.output, source, job.encode, width=source.width * (2 if job.compare else 1))
    except BaseException:
        source.close()
        raise
    summary = VideoReport(
        input=str(job.input), output=str(job.output), frames=0, seconds=0.0, stages=stats.stages,
        width=sink.width, height=sink.height, codec=sink.codec_name, pixel_format=sink.layout.format,
        engine={"backend": engine.backend, "precision": engine.precision, "device": str(engine.device)},
    )
    decoded: queue.Queue = queue.Queue(maxsize=max(4, 2 * job.batch))
    results: queue.Queue = queue.Queue(maxsize=3)
    try:
        stage = InferenceStage(engine, source, sink.color, job.batch, job.compare, preview is not None, stats,
                               removed=job.temporal > 1)
    except BaseException:
        # Nothing was written yet: close both containers and leave no empty output behind.
        sink.close(remux_rest=False)
        source.close()
        job.output.unlink(missing_ok=True)
        raise

    decode_error: list[Exception] = []
    runtime = Runtime()
    stop = runtime.stop

    def decode() -> None:
        it = frames(source)
        try:
            while not stop.is_set():
                start = time.perf_counter()
                frame = next(it, None)
                stats.add("decode", time.perf_counter() - start)
                if frame is None:
                    break
                stats.decoded += 1
                if not put(decoded, frame, stop):
                    return
        except Exception as err:  # noqa: BLE001 - reported once the frames before it are written
            # An unreadable stretch of the input ends the input there, not the job: the frames
            # already decoded and queued are derained and written before the error is reported.
            decode_error.append(err)
        put(decoded, END, stop)

    fusion = TemporalFilter(job.temporal, sink.color, job.fusion, source.width if job.compare else 0) if job.temporal > 1 else None

    def write(pts: int, planes: list[np.ndarray]) -> None:
        with stats.time("encode"):
            sink.write(planes, pts)
        stats.written = sink.frames

    def encode() -> None:
        while True:
            item = get(results, stop)
            if not isinstance(item, Result):
                break
            for i, (pts, planes) in enumerate(zip(item.pts, item.planes)):
                if stop.is_set():
                    return
                if fusion is None:
                    write(pts, planes)
                    continue
                with stats.time("temporal"):
                    ready = fusion.push(pts, planes, item.removed[i] if item.removed is not None else None)
                for done in ready:
                    write(*done)
            if preview is not None and item.preview is not None:
                for image in item.preview:
                    preview(image)
        if fusion is not None and not stop.is_set():
            # The input has ended: the last (K-1)/2 frames, held back for neighbours that never came.
            with stats.time("temporal"):
                ready = fusion.flush()
            for done in ready:
                write(*done)

    runtime.worker("derain-decode", decode)
    writer = runtime.worker("derain-encode", encode)

    def main() -> None:
        runtime.start()
        _infer(stage, decoded, results, job.batch, stop)
        runtime.end_output(results, writer)

    def finish(outcome: Outcome) -> None:
        for thread in runtime.workers:
            join(thread)
        failure = outcome.failure or next(iter(decode_error), None) or runtime.error()
        early = failure is not None or outcome.signal is not None
        try:
            if fusion is not None and runtime.error() is None:
                # A stop leaves the frames the fusion held back for their next neighbours:
                # they were derained, so they are written (fused with the neighbours there are).
                for done in fusion.flush():
                    write(*done)
            with stats.time("encode"):
                sink.close(remux_rest=not early)
        except Exception as err:  # noqa: BLE001 - the first failure is the one to report
            failure = failure or err
        finally:
            source.close()
        outcome.failure = failure
        summary.corrupt_packets = source.corrupt_packets
        summary.frames = sink.frames
        summary.seconds = stats.elapsed
        summary.passthrough_packets = sink.packets
        if (failure is not None or outcome.signal is not None) and (not job.keep_partial or sink.frames == 0):
            job.output.unlink(missing_ok=True)
            summary.output_kept = False

    context = on_start(source, sink) if on_start else contextlib.nullcontext()
    outcome = runtime.run(context, main, finish)
    summary.interrupted = outcome.signal
    failure = outcome.failure
    if failure is None or summary.interrupted:
        return summary
    if isinstance(failure, MIDFILE_ERRORS) and outcome.started:
        summary.error, summary.exception = message(failure), failure
        return summary
    raise failure  # a refusal before the first frame is the caller's one-line error


def _infer(stage: InferenceStage, decoded: queue.Queue, results: queue.Queue, size: int, stop: threading.Event) -> None:
    """The batcher and the inference stage: B frames at a time, the last batch possibly short."""
    batch: list[Frame] = []
    try:
        while True:
            item = get(decoded, stop)
            if item is not END:
                batch.append(item)
                if len(batch) < size:
                    continue
            if batch:
                for result in stage.submit(batch):
                    if not put(results, result, stop):
                        return
                batch = []
            if item is END:
                break
        for result in stage.drain():
            put(results, result, stop)
    finally:
        stage.settle()
