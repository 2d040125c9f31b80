"""`derain.batch`: many videos and images at once, on Ray workers on this machine or a cluster.

Each worker is a Ray actor that builds its engine once and runs whole files through
`derain.video` / `derain.image`: one file per task, no frame goes through Ray's object store, so
every input and the output folder must be paths that every worker sees (a shared filesystem on
a cluster). Nothing is lost: each output is written under a temporary name beside it
(`.NAME.part.SUFFIX`) and renamed when complete; a failing file is recorded and the job goes
on; a file whose worker died (killed, out of memory) is retried on a fresh worker. The record
`OUTDIR/.derain-batch.jsonl` (one JSON line per file) makes a rerun skip what is already done.

Ray is an optional extra: `pip install 'derain[ray]'`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from derain.models.data import IMAGE_SUFFIXES
from derain.models.errors import DerainError, EngineError, InputError
from derain.models.files import atomic_path
from derain.models.hub import resolve_weights
from derain.models.temporal import check_temporal

if TYPE_CHECKING:
    from derain.engines import Engine

log = logging.getLogger("derain")

PathLike = str | os.PathLike[str]
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v")
RECORD_NAME = ".derain-batch.jsonl"
START_TIMEOUT = 600  # seconds for a worker to be placed and build its engine (a TensorRT build takes minutes)
KILL_TIMEOUT = 60  # seconds for killed workers to be gone before their temporaries are removed regardless
Kind = Literal["video", "image"]

__all__ = ["BatchReport", "FileResult", "BatchProgress", "batch", "plan_batch", "VIDEO_SUFFIXES", "RECORD_NAME"]


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: its absolute input path, its final output path and its kind."""

    input: Path
    output: Path
    kind: Kind


@dataclass
class FileResult:
    """What became of one file: status is "done", "failed", "skipped" or "interrupted"."""

    input: str
    output: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None


@dataclass
class BatchReport:
    """What `derain.batch` did: each file's result, the time, the workers and how it ended.

    `interrupted` is "SIGINT" (Ctrl-C) or "stopped" (the `stop` event) when the job was stopped; `cancelled` then names the
    inputs that were running (recorded as "interrupted" and redone by a rerun).
    """

    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: list[dict[str, object]] = field(default_factory=list)
    interrupted: str | None = None
    cancelled: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for result in self.files if result.status == status)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def fps(self) -> float:
        """Frames derained in this run per second of the whole job (0 when none)."""
        frames = sum(result.frames for result in self.files if result.status == "done")
        return frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "done": self.done, "failed": self.failed, "skipped": self.skipped,
            "files": [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in self.files],
            "seconds": round(self.seconds, 3), "fps": round(self.fps, 3), "workers": self.workers,
            "interrupted": self.interrupted, "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch is: files finished (done, failed or skipped) of `total`, and what each
    busy worker runs: its name -> (input, frames written, frames expected or 0)."""

    finished: int
    total: int
    failed: int
    running: dict[str, tuple[str, int, int]]


# Planning: which files, to which outputs.


def plan_batch(inputs: Sequence[PathLike], outdir: PathLike) -> list[BatchItem]:
    """Every file of a batch and where its output goes.

    Args:
        inputs: video or image files, folders (searched recursively for the video types in
            `VIDEO_SUFFIXES` and the image types derain reads), or "@LIST" files that name one
            input per line (blank lines and "#" comments skipped; relative to the list's folder).
        outdir: the output folder. A file found in a folder keeps its path relative to that
            folder; a file named directly keeps its name. Videos keep their name and container,
            images become .png.

    Returns:
        The items, in the order given (folders sorted), as absolute paths.

    Raises:
        FileNotFoundError: an input that does not exist.
        derain.InputError: a file of another type, an empty batch, or two inputs that would
            write the same output (or an output that is an input).
    """
    root = Path(outdir).absolute()
    items: list[BatchItem] = []
    for entry in _expand_lists(inputs):
        path = Path(entry).absolute()
        if path.is_dir():
            items.extend(_item(found, root / found.relative_to(path)) for found in _search(path, root))
        elif path.is_file():
            if _kind(path) is None:
                raise InputError(f"{entry}: not a video ({' '.join(VIDEO_SUFFIXES)}) or image ({' '.join(IMAGE_SUFFIXES)}) file")
            items.append(_item(path, root / path.name))
        else:
            raise FileNotFoundError(f"{entry}: no such file or folder")
    if not items:
        raise InputError(f"{' '.join(map(str, inputs))}: no video or image files found")
    _check_unique(items)
    return items


def _expand_lists(inputs: Sequence[PathLike]) -> Iterator[str]:
    for entry in (os.fspath(item) for item in inputs):
        if not entry.startswith("@"):
            yield entry
            continue
        listing = Path(entry[1:])
        try:
            lines = listing.read_text().splitlines()
        except OSError as err:
            raise FileNotFoundError(f"{entry}: cannot read the list ({err.strerror})") from None
        for line in (line.strip() for line in lines):
            if line and not line.startswith("#"):
                yield str(listing.parent / line)


def _kind(path: Path) -> Kind | None:
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else None


def _search(folder: Path, outdir: Path) -> list[Path]:
    """Video and image files under `folder`, sorted; hidden files (our temporaries among them)
    and the output folder itself (when it lies inside) are left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or path.is_relative_to(outdir):
            continue
        if path.is_file() and _kind(path) is not None:
            found.append(path)
    return found


def _item(path: Path, output: Path) -> BatchItem:
    kind = _kind(path)
    assert kind is not None  # only typed files reach here
    return BatchItem(path, output.with_suffix(".png") if kind == "image" else output, kind)


def _check_unique(items: list[BatchItem]) -> None:
    inputs = {item.input.resolve() for item in items}
    taken: dict[Path, Path] = {}
    for item in items:
        if item.output.resolve() in inputs:
            raise InputError(f"{item.output}: is an input; write the outputs to another folder (`outdir`)")
        other = taken.setdefault(item.output, item.input)
        if other != item.input:
            raise InputError(f"{other} and {item.input} would both be written to {item.output}; derain them in separate batches")


def part_path(output: Path) -> Path:
    """The temporary name an output is written under: hidden, beside it, with its suffix kept so
    that the muxer picks the same container."""
    return output.with_name(f".{output.stem}.part{output.suffix}")


def remove_temporaries(item: BatchItem) -> None:
    """Remove what a worker stopped midway (killed, cancelled) left of `item`'s output: a video's
    part file, or the randomly named temporaries (`.NAME.png.XXXXXXXX`) an image is written to."""
    if item.kind == "video":
        part_path(item.output).unlink(missing_ok=True)
        return
    for tmp in item.output.parent.glob(f".{glob.escape(item.output.name)}.*"):
        tmp.unlink(missing_ok=True)


# The record: one JSON line per file, the last line for an input wins.


def _key(item: BatchItem, options: dict[str, object]) -> dict[str, object]:
    """What the output depends on: the input's size and mtime and the options that change it."""
    stat = item.input.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **options}


class Record:
    """OUTDIR/.derain-batch.jsonl: read once, compacted, then appended to a line per file."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / RECORD_NAME
        self.lines: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for text in self.path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a crash is no record
                    line = json.loads(text)
                    self.lines[line["input"]] = line
            with atomic_path(self.path, ".jsonl") as tmp:
                tmp.write_text("".join(json.dumps(line) + "\n" for line in self.lines.values()))

    def is_done(self, item: BatchItem, key: dict[str, object]) -> bool:
        line = self.lines.get(str(item.input))
        return line is not None and line["status"] == "done" and line.get("key") == key and item.output.is_file()

    def add(self, result: FileResult, key: dict[str, object]) -> None:
        line = {**asdict(result), "key": key}
        self.lines[result.input] = line
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a result on disk before the next file is handed out


# The worker: a Ray actor (wrapped with ray.remote when the job starts).


@dataclass(frozen=True)
class EngineSettings:
    """How each worker builds its engine: by name and options, or with `factory` when given."""

    weights: str | None
    engine: str
    device: str
    precision: str
    stages: int | None
    tile: int | None
    allow_lossy: bool
    factory: Callable[[], Engine] | None = None


@dataclass(frozen=True)
class VideoSettings:
    """The `derain.video` options every video of the batch gets."""

    batch: int = 1
    temporal: int = 1
    fusion: str = "rain"
    codec: str | None = None
    crf: float | None = None
    bitrate: str | None = None
    preset: str | None = None


class Worker:
    """One engine in one process: derains whole files handed to it one at a time."""

    def __init__(self, name: str, settings: EngineSettings) -> None:
        self.name = name
        self.failure: str | None = None
        self.progress_now: tuple[str, int, int] | None = None
        try:
            self.engine = self._build(settings)
        except DerainError as err:  # reported by `describe`, so the job can refuse in one line
            self.failure = str(err)

    @staticmethod
    def _build(settings: EngineSettings) -> Engine:
        import derain

        if settings.factory is not None:
            return settings.factory()
        model = derain.load_model(settings.weights, stages=settings.stages)
        return derain.build_engine(model, settings.engine, settings.device, settings.precision,
                                   tile=settings.tile, allow_lossy=settings.allow_lossy)

    def describe(self) -> dict[str, object]:
        """Where this worker runs and on what, or the error that keeps it from running."""
        if self.failure is not None:
            return {"name": self.name, "error": self.failure}
        import ray
        import torch

        return {"name": self.name, "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid(), "threads": torch.get_num_threads(), "backend": self.engine.backend,
                "device": str(self.engine.device), "precision": self.engine.precision}

    def progress(self) -> tuple[str, int, int] | None:
        """The file running now, its frames written and expected."""
        return self.progress_now

    def run(self, item: BatchItem, video: VideoSettings) -> tuple[int, str | None]:
        """Derain one file into its output; (frames written, None) or (0, the one-line error)."""
        self.progress_now = (str(item.input), 0, 0)
        try:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            return self._image(item) if item.kind == "image" else self._video(item, video)
        except (DerainError, OSError) as err:
            message = str(err).splitlines()[0]
            return 0, message if str(item.input) in message else f"{item.input}: {message}"
        finally:
            self.progress_now = None

    def _image(self, item: BatchItem) -> tuple[int, str | None]:
        import derain

        # derain.image writes OUTDIR/STEM.png under a temporary name and renames it when whole.
        report = derain.image([item.input], item.output.parent, engine=self.engine, overwrite=True)
        return (1, None) if not report.failed else (0, next(iter(report.failed.values())))

    def _video(self, item: BatchItem, video: VideoSettings) -> tuple[int, str | None]:
        import derain
        from derain.api import VideoProgress

        def note(progress: VideoProgress) -> None:
            self.progress_now = (str(item.input), progress.written, progress.total)

        tmp = part_path(item.output)
        try:
            report = derain.video(item.input, tmp, engine=self.engine, overwrite=True, keep_partial=False,
                                  batch=video.batch, temporal=video.temporal, fusion=video.fusion, codec=video.codec,
                                  crf=video.crf, bitrate=video.bitrate, preset=video.preset, on_progress=note)
            if not report.complete:
                return 0, f"{item.input}: {report.error or f'interrupted ({report.interrupted})'}"
            os.replace(tmp, item.output)
            return report.frames, None
        finally:
            tmp.unlink(missing_ok=True)


# The job.


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DerainError("derain batch needs Ray, an optional extra: pip install 'derain[ray]'") from None
    return ray


def default_workers(gpus: float) -> int:
    """One worker per GPU, else half the cores (a worker's decode, engine and encode threads use more than one)."""
    return int(gpus) if gpus >= 1 else max(1, (os.cpu_count() or 2) // 2)


def _check_address(address: str) -> None:
    """Refuse at once an address this Ray cannot use: ray:// without Ray Client's package, or a
    HOST:PORT nothing answers on (Ray itself retries such an address for minutes)."""
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's one dependency beyond Ray's own (ray[client])
        except ImportError:
            raise DerainError(f"address={address!r}: Ray Client (ray://) needs an extra package: pip install 'ray[client]'") from None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray reads its own way
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise DerainError(f"address={address!r}: no Ray cluster answers there ({err.strerror or err}); "
                          "start one with `ray start --head`, or check the host and port") from None


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None, workers: int | None) -> Iterator[None]:
    """Ray for the job: the one this process already joined, a cluster at `address`, or an
    embedded local Ray started here and shut down at the end."""
    if ray.is_initialized():
        yield
        return
    sigterm = signal.getsignal(signal.SIGTERM)
    if address is not None:
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise DerainError(f"address={address!r}: cannot join the Ray cluster ({str(err).splitlines()[0]}); "
                              "check the address, and RAY_AUTH_MODE=token where the cluster uses token authentication") from None
    else:
        cores = os.cpu_count() or 1
        ray.init(address="local", num_cpus=max(cores, workers or 1), include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
    if callable(sigterm) and threading.current_thread() is threading.main_thread():
        # Ray's start puts a crash handler of its own on SIGTERM; the caller's (the command
        # line's, which stops the job cleanly) goes back in its place.
        signal.signal(signal.SIGTERM, sigterm)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class _Slot:
    """A worker's place in the pool: its actor, and the file it runs (None when idle)."""

    name: str
    actor: Any
    item: BatchItem | None = None
    started: float = 0.0
    spawned: int = 1


def batch(
    inputs: Sequence[PathLike],
    outdir: PathLike,
    *,
    weights: PathLike | None = None,
    engine: str | Callable[[], Engine] = "auto",
    device: str = "auto",
    precision: str = "auto",
    stages: int | None = None,
    tile: int | None = None,
    allow_lossy: bool = False,
    batch: int = 1,
    temporal: int = 1,
    fusion: str = "rain",
    codec: str | None = None,
    crf: float | None = None,
    bitrate: str | None = None,
    preset: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    retries: int = 2,
    force: bool = False,
    on_progress: Callable[[BatchProgress], None] | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    stop: threading.Event | None = None,
) -> BatchReport:
    """Derain many videos and images into `outdir` on Ray workers, resumably.

    Args:
        inputs, outdir: as for `plan_batch`; every path must be one that every worker sees.
        weights ... allow_lossy: each worker's engine, as for `derain.build_engine`; or
            `engine=` a function that builds an Engine (it is pickled to every worker).
        batch, temporal, fusion, codec, crf, bitrate, preset: as for `derain.video`, for every
            video. `temporal` fuses neighbouring frames of a video: an image, a frame alone, is
            derained as `derain.image` does whatever `temporal` is (so a folder of both works).
        workers: Ray actors (default: one per GPU, else half the cores).
        gpus_per_worker: GPUs each worker holds (default: 1 where the cluster has GPUs, else 0).
        address: a Ray cluster to join ("auto", "HOST:PORT" or "ray://HOST:PORT"); default: an
            embedded local Ray for the job (or the one this process already started).
        retries: times a file is retried when its worker dies.
        force: redo files the record says are done.
        on_progress: called about twice a second from this thread.
        on_file: called with each file's result (skipped ones first).
        stop: set it (from a signal handler or another thread) to stop the job as Ctrl-C does.

    Returns:
        The report. A job stopped by Ctrl-C (KeyboardInterrupt in this thread) or `stop` returns
        it with `interrupted` "SIGINT" or "stopped" and its running files cancelled.

    Raises:
        derain.DerainError: Ray missing, bad options or inputs, or an engine no worker can build
            (before any file); FileNotFoundError for a missing input. derain.EngineError also
            when a dead worker's replacement cannot start: the files running then are stopped,
            recorded as interrupted and their temporaries removed, as Ctrl-C does.
    """
    if batch < 1 or retries < 0 or (workers is not None and workers < 1) or (gpus_per_worker or 0) < 0:
        raise InputError(f"batch={batch} / retries={retries} / workers={workers} / gpus_per_worker={gpus_per_worker}: "
                         "need `batch` >= 1, `retries` >= 0, `workers` >= 1, `gpus_per_worker` >= 0")
    root = Path(outdir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"outdir={str(root)!r}: is a file; give a folder for the outputs")
    check_temporal(temporal, fusion)
    items = plan_batch(inputs, root)
    images = sum(1 for item in items if item.kind == "image")
    if temporal > 1 and images:
        log.info("temporal=%d fuses the frames of each video; the %d image(s) are derained on their own", temporal, images)
    settings = EngineSettings(_weights_for_workers(weights), engine if isinstance(engine, str) else "custom",
                              device, precision, stages, tile, allow_lossy, None if isinstance(engine, str) else engine)
    video = VideoSettings(batch, temporal, fusion, codec, crf, bitrate, preset)
    options: dict[str, object] = {
        "weights": settings.weights, "engine": settings.engine if settings.factory is None else _qualname(settings.factory),
        "precision": precision, "stages": stages, "tile": tile, "codec": codec, "crf": crf, "bitrate": bitrate, "preset": preset,
    }
    # Only a video's output depends on the fusion; absent when it is off, so that the records
    # written before there was a --temporal still match.
    fused = {**options, "temporal": temporal, "fusion": fusion} if temporal > 1 else options
    if address is None and isinstance(engine, str):
        resolve_weights(weights)  # the workers share this machine: a missing file is refused before Ray starts
    ray = _import_ray()
    if address is not None:
        _check_address(address)
    root.mkdir(parents=True, exist_ok=True)
    record = Record(root)
    report = BatchReport()
    keys = {item: _key(item, fused if item.kind == "video" else options) for item in items}
    todo: deque[BatchItem] = deque()
    for item in items:
        if not force and record.is_done(item, keys[item]):
            line = record.lines[str(item.input)]
            _emit(report, FileResult(str(item.input), str(item.output), "skipped", line.get("frames", 0), 0.0, 0), on_file)
        else:
            todo.append(item)
    for item in todo:
        # A job killed outright (SIGKILL, power lost) cleans up nothing: its temporaries go now.
        remove_temporaries(item)
    start = time.perf_counter()
    if on_progress is not None:
        on_progress(BatchProgress(len(report.files), len(items), 0, {}))  # the count, while Ray starts
    if todo:
        with _ray_session(ray, address, workers):
            pool = _Pool(ray, settings, video, workers, gpus_per_worker, retries)
            pool.run(todo, len(items), record, keys, report, on_progress, on_file, stop)
    report.seconds = time.perf_counter() - start
    return report


def _weights_for_workers(weights: PathLike | None) -> str | None:
    """A checkpoint path made absolute (a worker's working folder is not ours); a name as it is."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    return str(path.absolute()) if path.exists() else os.fspath(weights)


def _qualname(factory: Callable[[], object]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__name__)}"


def _emit(report: BatchReport, result: FileResult, on_file: Callable[[FileResult], None] | None) -> None:
    report.files.append(result)
    if on_file is not None:
        on_file(result)


class _Pool:
    """The Ray actors and the loop that hands them files, one per worker at a time."""

    def __init__(self, ray: Any, settings: EngineSettings, video: VideoSettings, workers: int | None,
                 gpus_per_worker: float | None, retries: int) -> None:
        self.ray, self.settings, self.video, self.retries = ray, settings, video, retries
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        self.count = workers or default_workers(gpus)
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if self.gpus * self.count > gpus or self.count > cpus:
            raise InputError(f"workers={self.count} x gpus_per_worker={self.gpus:g}: the Ray cluster has {cpus:g} CPU(s) "
                             f"and {gpus:g} GPU(s); ask for fewer workers")
        # Ray sets a worker's torch threads (OMP_NUM_THREADS) to the CPUs it holds: on one node the
        # workers share its cores out; across nodes a worker holds one, so that any node fits it.
        one_node = sum(1 for node in ray.nodes() if node.get("Alive")) == 1
        self.cpus = max(1, int(cpus // self.count)) if one_node else 1
        # Two threads per actor: one runs a file, the other answers `progress` meanwhile.
        self.actor_class = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0, max_concurrency=2)(Worker)
        self.described: list[dict[str, object]] = []

    def _start(self, names: list[str]) -> list[Any]:
        """Actors for `names`, started side by side, once each has built its engine."""
        actors = [self.actor_class.remote(name, self.settings) for name in names]
        try:
            described: list[dict[str, object]] = self.ray.get([actor.describe.remote() for actor in actors], timeout=START_TIMEOUT)
        except self.ray.exceptions.GetTimeoutError:
            for actor in actors:
                self.ray.kill(actor)
            raise EngineError(f"{len(names)} worker(s) did not start within {START_TIMEOUT} s: the Ray cluster may lack "
                              f"the CPUs/GPUs asked for (`workers`, `gpus_per_worker`)") from None
        except self.ray.exceptions.RayActorError as died:
            for actor in actors:
                self.ray.kill(actor)
            raise EngineError(f"worker(s) {', '.join(names)}: died while starting ({str(died).splitlines()[0]})") from None
        for name, description in zip(names, described):
            if "error" in description:
                for started in actors:
                    self.ray.kill(started)
                raise EngineError(f"worker {name}: {description['error']}")
        self.described.extend(described)
        return actors

    def run(self, todo: deque[BatchItem], total: int, record: Record, keys: dict[BatchItem, dict[str, object]],
            report: BatchReport, on_progress: Callable[[BatchProgress], None] | None,
            on_file: Callable[[FileResult], None] | None, stop: threading.Event | None) -> None:
        report.workers = self.described
        names = [f"w{k}" for k in range(min(self.count, len(todo)))]
        slots = [_Slot(name, actor) for name, actor in zip(names, self._start(names))]
        running: dict[Any, _Slot] = {}
        attempts: dict[BatchItem, int] = {}

        def finish(slot: _Slot, status: str, frames: int, error: str | None) -> None:
            assert slot.item is not None
            item, slot.item = slot.item, None
            result = FileResult(str(item.input), str(item.output), status, frames, round(time.perf_counter() - slot.started, 3),
                                attempts[item], error)
            record.add(result, keys[item])
            _emit(report, result, on_file)

        try:
            while todo or running:
                if stop is not None and stop.is_set():
                    self._cancel(slots, running, report, finish, "stopped")
                    return
                for slot in slots:
                    if slot.item is None and todo:
                        slot.item, slot.started = todo.popleft(), time.perf_counter()
                        attempts[slot.item] = attempts.get(slot.item, 0) + 1
                        running[slot.actor.run.remote(slot.item, self.video)] = slot
                ready, _ = self.ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    self._collect(ref, running.pop(ref), todo, attempts, finish)
                if on_progress is not None:
                    on_progress(self._progress(report, total, slots))
        except KeyboardInterrupt:
            self._cancel(slots, running, report, finish, "SIGINT")
        except BaseException as failure:
            # The job ends early (a replacement worker that cannot start, Ray itself failing):
            # the files still running are stopped and recorded like a Ctrl-C's, none half-written.
            why = str(failure).splitlines()[0] if str(failure) else type(failure).__name__
            self._cancel(slots, running, report, finish, f"the job stopped: {why}")
            raise

    def _cancel(self, slots: list[_Slot], running: dict[Any, _Slot], report: BatchReport,
                finish: Callable[[_Slot, str, int, str | None], None], why: str) -> None:
        """Stop handing out files and stop the running ones, each recorded as interrupted."""
        report.interrupted = why
        stopped = [slot for slot in slots if slot.item is not None]
        for slot in stopped:
            # Killing is the one way to stop a running actor task at once.
            with contextlib.suppress(self.ray.exceptions.RayError):
                self.ray.kill(slot.actor)
        # A kill takes effect later: its temporary output is removed once the worker is gone
        # (its task has ended), so that no worker opens one after it was removed.
        ends = [ref for ref, slot in running.items() if slot.item is not None]
        if ends:
            with contextlib.suppress(self.ray.exceptions.RayError):
                self.ray.wait(ends, num_returns=len(ends), timeout=KILL_TIMEOUT)
        for slot in stopped:
            assert slot.item is not None
            remove_temporaries(slot.item)
            report.cancelled.append(str(slot.item.input))
            finish(slot, "interrupted", 0, f"{slot.item.input}: interrupted ({why})")

    def _collect(self, ref: Any, slot: _Slot, todo: deque[BatchItem], attempts: dict[BatchItem, int],
                 finish: Callable[[_Slot, str, int, str | None], None]) -> None:
        """One task's outcome: recorded, or its file handed back for a retry when its worker died."""
        ray = self.ray
        assert slot.item is not None
        try:
            frames, error = ray.get(ref)
        except ray.exceptions.RayActorError as died:
            item = slot.item
            why = str(died).splitlines()[0]
            log.warning("worker %s died running %s (%s); starting a replacement", slot.name, item.input, why)
            remove_temporaries(item)
            slot.spawned += 1
            [slot.actor] = self._start([f"{slot.name}.{slot.spawned}"])
            if attempts[item] <= self.retries:
                slot.item = None
                todo.appendleft(item)
            else:
                finish(slot, "failed", 0, f"{item.input}: its worker died {attempts[item]} time(s); last: {why}")
            return
        except ray.exceptions.RayTaskError as failed:
            finish(slot, "failed", 0, f"{slot.item.input}: {str(failed.cause).splitlines()[0]}")
            return
        finish(slot, "done" if error is None else "failed", frames, error)

    def _progress(self, report: BatchReport, total: int, slots: list[_Slot]) -> BatchProgress:
        running: dict[str, tuple[str, int, int]] = {}
        for slot in slots:
            if slot.item is None:
                continue
            now = None
            with contextlib.suppress(self.ray.exceptions.RayError, TimeoutError):
                now = self.ray.get(slot.actor.progress.remote(), timeout=0.2)
            running[slot.name] = now or (str(slot.item.input), 0, 0)
        finished = len(report.files)
        return BatchProgress(finished, total, report.failed, running)
