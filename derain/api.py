"""The public functions behind `import derain`: one call derains images, a video file, a live
feed, or hands derained frames to your own code.

Every function takes the same engine arguments (`weights`, `engine`, `device`, `precision`,
`stages`, `tile`, `allow_lossy`), or an already built `Engine` as `engine` to reuse it across
calls. Paths may be `str` or `os.PathLike`. Everything is checked before the model loads, and
failures raise `derain.DerainError` subclasses with a one-line message. What the library has to
say along the way (which engine `auto` picked, how a reduced-precision engine compares with
FP32) goes to the `derain` logger; the command line shows it, a program may listen or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from derain.engines import Engine, build_engine
from derain.models.brn import BRN
from derain.models.errors import InputError
from derain.models.hub import fetch, load_model
from derain.stream.color import to_rgb
from derain.stream.decode import Source, open_source
from derain.stream.decode import frames as decoded_frames
from derain.stream.encode import EncodeOptions, Sink
from derain.stream.images import ImageJob, plan_jobs, run_jobs
from derain.stream.live_pipeline import LiveReport, LiveStats, check_live_job, run_live
from derain.stream.pipeline import VideoJob, check_paths, run_video
from derain.stream.sources import open_live, parse_source
from derain.stream.stats import Stats, VideoReport, periodic

log = logging.getLogger("derain")

PathLike = str | os.PathLike[str]

__all__ = [
    "DerainedFrame", "ImageReport", "LiveJob", "LiveReport", "VideoReport",
    "fetch_weights", "frames", "image", "live", "video",
]


def fetch_weights(name: str, mirror: str | None = None, timeout: float = 30.0) -> Path:
    """Download the authors' named weights into the cache, SHA-256 checked; the cached path.

    Args:
        name: a registry name from `derain.list_weights()`, e.g. "brn-r100l".
        mirror: base URL of a flat folder of the released files, instead of the origin.
        timeout: network timeout in seconds.

    Raises:
        derain.WeightsError: an unknown name, or a download that failed or did not match.

    Example:
        >>> path = derain.fetch_weights("brn-r100l")  # doctest: +SKIP
    """
    return fetch(name, mirror=mirror, timeout=timeout)


def engine_for(
    weights: PathLike | None = None,
    engine: str | Engine = "auto",
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
) -> Engine:
    """`engine` itself when it is an Engine, else the engine built for those arguments."""
    if not isinstance(engine, str):
        if weights is not None or stages is not None or tile is not None:
            raise InputError("weights, stages and tile belong to the engine passed as engine=; give them to build_engine instead")
        return engine
    return _build(load_model(weights, stages=stages), weights, engine, device, precision, tile, allow_lossy)


def _build(model: BRN, weights: PathLike | None, engine: str, device: str, precision: str, tile: int | None,
           allow_lossy: bool) -> Engine:
    notes: list[str] = []
    built = build_engine(model, engine, device, precision, tile=tile, allow_lossy=allow_lossy, notes=notes)
    picked = "picked by auto" if engine == "auto" else "as asked"
    # auto on the CPU names its backend once it has seen a frame size (and logs it then).
    what = "the fastest CPU backend for each frame size" if built.backend == "auto" else f"{built.backend} engine"
    log.info("%s (T=%d) from %s: %s (%s), %s, %s", model.variant.upper(), model.stages,
             weights or "built-in weights", what, picked, built.precision, built.device)
    for note in notes:
        log.info("  passed over %s", note)
    return built


def first_frame(source: Source, engine: Engine) -> torch.Tensor:
    """The source's first frame as the pipeline converts it, on the engine's device and dtype."""
    rgb = to_rgb([torch.from_numpy(p.copy())[None] for p in source.first_planes()], source.color)
    return rgb.clamp(0, 1).to(engine.device, engine.dtype)


def prepare(engine: Engine, source: Source, batch: int = 1) -> None:
    """Build the engine for the job's shape and check a reduced precision against FP32, on the
    source's first frame, before any frame is written: a refusal leaves no output behind."""
    # getattr: an engine of the caller's own (duck-typed, not an Engine subclass) builds nothing per shape.
    if engine.precision == "fp32" and not getattr(engine, "per_shape", False):
        return
    shape = f"{batch}x3x{source.height}x{source.width}"
    log.info("preparing the %s engine for %s %s (built once per shape)", engine.backend, shape, engine.precision)
    before = engine.build_seconds
    engine.check(first_frame(source, engine), batch=batch)
    if engine.accuracy_db is not None:
        log.info("%s vs fp32 on the first frame: %.1f dB PSNR", engine.precision, engine.accuracy_db)
    if engine.build_seconds - before >= 1:
        log.info("%s engine for %s ready in %.1f s", engine.backend, shape, engine.build_seconds - before)


@dataclass(frozen=True)
class VideoProgress:
    """How far a video job is: frames written and decoded so far, of `total` (0 when unknown)."""

    written: int
    decoded: int
    total: int
    seconds: float


def video(
    input: PathLike,
    output: PathLike,
    *,
    weights: PathLike | None = None,
    engine: str | Engine = "auto",
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
    batch: int = 1,
    temporal: int = 1,
    fusion: str = "rain",
    compare: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    codec: str | None = None,
    crf: float | None = None,
    bitrate: str | None = None,
    preset: str | None = None,
    overwrite: bool = False,
    keep_partial: bool = True,
    on_start: Callable[[Source, Sink], contextlib.AbstractContextManager[object]] | None = None,
    on_progress: Callable[[VideoProgress], None] | None = None,
    preview: Callable[[np.ndarray[Any, Any]], None] | None = None,
) -> VideoReport:
    """Derain a video file into another, keeping every frame's timestamp, the audio, subtitles,
    tags and attachments (copied untouched); the output's name picks its container.

    Args:
        input, output: the video files; `output` must not exist unless `overwrite`.
        weights ... allow_lossy: the engine (see `build_engine`), or `engine=` a built Engine.
        batch: frames per engine call (4-8 helps on a GPU).
        temporal: fuse each derained frame with its `temporal`-1 neighbours aligned by optical
            flow (odd; 1: off), removing what one frame alone shows (residual streaks,
            flicker); the output lags (temporal-1)/2 frames, each frame keeps its timestamp.
        fusion: how the aligned frames combine: "rain" (pixels where the model removed rain, or
            brighter than their aligned neighbours, taken from the neighbours clean there),
            "mean" (confidence-weighted) or "median".
        compare: write the input and the derained video side by side.
        start, duration: seconds to skip and to derain (the output starts at 0).
        codec, crf, bitrate, preset: the video encoder (default: by the output's name).
        keep_partial: keep the frames written when the job stops early (else remove the file).
        on_start: called with the opened source and sink before frames flow; may return a
            context that lives while they do.
        on_progress: called about four times a second from another thread, and at the end.
        preview: gets each output frame as BGR uint8 (a display).

    Returns:
        The report: `frames`, `fps`, `complete`, `error` or `interrupted` when it stopped
        early (the output then holds the frames written, finalised into a playable file).

    Raises:
        derain.InputError, derain.OutputError, derain.WeightsError, derain.EngineError: before
            any frame, with nothing written; FileExistsError or FileNotFoundError for the paths.

    Example:
        >>> report = derain.video("rainy.mp4", "clean.mp4", device="cpu")  # doctest: +SKIP
        >>> report.frames, report.fps  # doctest: +SKIP
    """
    job = VideoJob(
        input=Path(input), output=Path(output), batch=batch, start=start, duration=duration, compare=compare,
        encode=EncodeOptions(codec, crf, bitrate, preset), overwrite=overwrite, keep_partial=keep_partial,
        temporal=temporal, fusion=fusion,
    )
    check_video_job(job)
    runner = engine_for(weights, engine, device, precision, stages, tile, allow_lossy)
    stats = Stats()

    @contextlib.contextmanager
    def started(source: Source, sink: Sink) -> Iterator[None]:
        prepare(runner, source, batch)
        with contextlib.ExitStack() as stack:
            if on_start is not None:
                stack.enter_context(on_start(source, sink))
            if on_progress is not None:
                tick = lambda: on_progress(VideoProgress(stats.written, stats.decoded, source.expected_frames, stats.elapsed))
                stack.enter_context(periodic(0.25, tick, "derain-progress"))
                stack.callback(tick)
            yield

    return run_video(job, runner, stats, started, preview)


def check_video_job(job: VideoJob) -> None:
    """Every refusal that needs no model: the paths, the times, the batch, the fusion window."""
    if not job.input.is_file():
        raise FileNotFoundError(f"{job.input}: no such file" if not job.input.exists() else f"{job.input}: not a file")
    if job.start < 0 or (job.duration is not None and job.duration <= 0):
        raise InputError(f"start={job.start} / duration={job.duration}: need `start` >= 0 and `duration` > 0")
    check_paths(job)


@dataclass
class ImageReport:
    """What `derain.image` did: each written PNG by its input, and each failed input's error."""

    written: dict[Path, Path] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)


def image(
    inputs: PathLike | list[PathLike],
    output: PathLike,
    *,
    weights: PathLike | None = None,
    engine: str | Engine = "auto",
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
    rain: bool = False,
    overwrite: bool = False,
    on_image: Callable[[Path, Path | None, str | None], None] | None = None,
) -> ImageReport:
    """Derain image files and folders of images into PNGs in the folder `output`.

    Gray images come back as RGB; an alpha channel is carried through. One image that cannot
    be read or written fails alone: it is in the report's `failed`, and the rest go on.

    Args:
        inputs: image files or folders of them (not searched recursively).
        output: the folder for NAME.png (and NAME_rain.png with `rain`); made if missing.
        rain: also write the rain layer the model removed.
        overwrite: replace PNGs already there (else refused before any work).
        on_image: called after each image with (input, output or None, error or None).

    Raises:
        FileNotFoundError, FileExistsError, NotADirectoryError: the paths, before any work;
        derain.WeightsError, derain.EngineError: the engine.

    Example:
        >>> derain.image(["photo.jpg"], "out/", device="cpu").written  # doctest: +SKIP
    """
    outdir = Path(output)
    listed = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    jobs = plan_jobs([Path(item) for item in listed], outdir, rain, overwrite)
    model: BRN | None = None
    if not rain:
        runner = engine_for(weights, engine, device, precision, stages, tile, allow_lossy)
    elif isinstance(engine, str):
        model = load_model(weights, stages=stages)
        runner = _build(model, weights, engine, device, precision, tile, allow_lossy)
    else:
        raise InputError("rain=True: the rain layer comes from the FP32 model; give weights= and the engine by name, not a built engine")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NotADirectoryError(f"outdir={str(outdir)!r}: cannot make the folder ({err.strerror})") from None
    report = ImageReport()

    def done(job: ImageJob, error: str | None) -> None:
        if error is None:
            report.written[job.source] = job.output
        else:
            report.failed[job.source] = error
        if on_image is not None:
            on_image(job.source, None if error else job.output, error)

    run_jobs(runner, model, jobs, done)
    return report


@dataclass(frozen=True)
class DerainedFrame:
    """One derained frame from `derain.frames`: RGB uint8 (H x W x 3), its timestamp in seconds
    (None where the source has none) and its index in the order read."""

    rgb: np.ndarray[Any, Any]
    time: float | None
    index: int


def frames(
    source: PathLike | int,
    engine: str | Engine = "auto",
    *,
    weights: PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
    timeout: float = 5.0,
) -> Iterator[DerainedFrame]:
    """Derained frames of a video file, camera or stream URL, one at a time, for your own code.

    Every frame is read and derained in order at the pace the loop takes them (a live source
    waits in its buffers meanwhile; `derain.live` drops frames to bound latency instead).
    The source is closed when the loop ends or the iterator is closed.

    Args:
        source: a video file, a stream URL (rtsp://, http(s)://, udp://, ...), a camera index
            or /dev/videoN.
        engine ... allow_lossy: as for `derain.video`.
        timeout: seconds a live source may stay silent before it counts as gone.

    Raises:
        derain.InputError: a source that cannot be opened; the engine's errors.

    Example:
        >>> for frame in derain.frames("rainy.mp4", device="cpu"):  # doctest: +SKIP
        ...     detector(frame.rgb)
    """
    opened = _open_any(source, timeout)
    try:
        runner = engine_for(weights, engine, device, precision, stages, tile, allow_lossy)
        prepare(runner, opened)
        for frame in decoded_frames(opened):
            rgb = to_rgb([torch.from_numpy(p.copy())[None] for p in frame.planes], opened.color)
            out = runner.run(rgb.clamp(0, 1).to(runner.device, runner.dtype))[0]
            pixels = out.float().mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            seconds = float((frame.pts - opened.start_pts) * opened.time_base) if opened.time_base else None
            yield DerainedFrame(pixels, seconds, frame.index)
    finally:
        opened.close()


def _open_any(source: PathLike | int, timeout: float) -> Source:
    text = os.fspath(source) if not isinstance(source, int) else str(source)
    if Path(text).is_file():
        return open_source(text)
    return open_live(parse_source(text, timeout), timeout)


def live(
    source: PathLike | int,
    *,
    output: PathLike | None = None,
    restream: str | None = None,
    weights: PathLike | None = None,
    engine: str | Engine = "auto",
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
    realtime: bool = False,
    timeout: float = 5.0,
    reconnect_max: int = 10,
    max_latency: float = 0.5,
    drop_policy: str = "oldest",
    temporal: int = 1,
    fusion: str = "rain",
    compare: bool = False,
    codec: str | None = None,
    crf: float | None = None,
    bitrate: str | None = None,
    preset: str | None = None,
    input_options: dict[str, str] | None = None,
    overwrite: bool = False,
    stop: threading.Event | None = None,
    on_start: Callable[[Source], contextlib.AbstractContextManager[object]] | None = None,
    on_stats: Callable[[dict[str, object]], None] | None = None,
    stats: LiveStats | None = None,
    preview: Callable[[np.ndarray[Any, Any]], None] | None = None,
) -> LiveReport:
    """Derain a camera or stream live with bounded latency, reconnecting when it drops, until it
    ends for good, gives up reconnecting, or is stopped.

    Args:
        source: a stream URL, a camera index or /dev/videoN, or with `realtime` a file played
            at its own frame rate.
        output: record the derained stream (.mkv survives a crash best).
        restream: send it on: rtsp://HOST:PORT/PATH, udp://HOST:PORT or tcp://HOST:PORT.
        engine ... allow_lossy: as for `derain.video`.
        timeout: seconds an open or a read may wait for data.
        reconnect_max: tries in a row before giving up (0: end at the first drop).
        max_latency: seconds from arrival after which a frame is dropped rather than output.
        drop_policy: "oldest" (freshest picture) or "every-nth" (keep every Nth frame: even motion).
        temporal, fusion: as for `derain.video`, but causal: each frame is fused with the
            `temporal`-1 frames before it and leaves at once (no frames of delay).
        input_options: FFmpeg input options, e.g. {"video_size": "1280x720"} for a camera.
        stop: set it from another thread to stop the job; it then returns its report.
        on_start: called with the first opened source before frames flow; may return a context.
        on_stats: called about once a second with the running figures (frames in, out,
            dropped, latency percentiles, reconnects, state).
        stats: a `LiveStats` to count into, for a caller that watches it as the job runs.

    Returns:
        The report: `stopped_by`, `error`, `output` (None when nothing was recorded), `stats`.

    Raises:
        derain.InputError: a source or sink that cannot be used before the first frame.

    Example:
        >>> stop = threading.Event()  # doctest: +SKIP
        >>> report = derain.live("rtsp://camera/stream", output="rec.mkv", stop=stop)  # doctest: +SKIP
    """
    from derain.stream.live_pipeline import LiveJob as Job

    parsed = parse_source(str(source), timeout, realtime, input_options)
    job = Job(
        source=parsed, output=Path(output) if output is not None else None, restream=restream, timeout=timeout,
        reconnect_max=reconnect_max, max_latency=max_latency, drop_policy=drop_policy, compare=compare,
        temporal=temporal, fusion=fusion, overwrite=overwrite, encode=EncodeOptions(codec, crf, bitrate, preset, tune="zerolatency"),
    )
    check_live_job(job)  # before the model loads
    runner = engine_for(weights, engine, device, precision, stages, tile, allow_lossy)
    counts = stats or LiveStats()

    @contextlib.contextmanager
    def started(first: Source) -> Iterator[None]:
        prepare(runner, first)
        with contextlib.ExitStack() as stack:
            if on_start is not None:
                stack.enter_context(on_start(first))
            if on_stats is not None:
                stack.enter_context(periodic(1.0, lambda: on_stats(counts.snapshot()), "derain-live-stats"))
            yield

    return run_live(job, runner, counts, started, preview, stop=stop)


class LiveJob:
    """`derain.live` on a thread of its own, stopped when the `with` block ends.

    Example:
        >>> with derain.LiveJob("rtsp://camera/stream", output="rec.mkv") as job:  # doctest: +SKIP
        ...     time.sleep(60)
        >>> job.report.stats["frames_out"]  # doctest: +SKIP
    """

    def __init__(self, source: PathLike | int, **options: object) -> None:
        self._stop = threading.Event()
        self._source, self._options = source, options
        self._thread = threading.Thread(target=self._run, name="derain-live-job", daemon=True)
        self._report: LiveReport | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._report = live(self._source, stop=self._stop, **self._options)  # type: ignore[arg-type]
        except BaseException as err:  # handed to the thread that joins
            self._error = err

    def start(self) -> LiveJob:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> LiveReport:
        """Stop the job (it finalises its recording) and return its report."""
        self._stop.set()
        if self._thread.ident is None:
            raise RuntimeError("the live job was never started; use it in a with block, or call start()")
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        if self._report is None:
            raise TimeoutError(f"the live job did not stop within {timeout} s")
        return self._report

    @property
    def report(self) -> LiveReport:
        """The report, once the job has stopped."""
        if self._report is None:
            raise RuntimeError("the live job is still running; its report comes when stop() returns")
        return self._report

    def __enter__(self) -> LiveJob:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            self.stop()
        except Exception:
            if kind is None:  # the block's own error, if any, is the one to see
                raise
