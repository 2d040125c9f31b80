"""`auto` on the CPU: the fastest installed FP32 backend for each input shape, measured once and remembered.

Which backend is fastest on a CPU depends on the CPU, the library versions and the frame size
(ONNX Runtime lost to eager at 160x120 and won at 320x240 on the same box), so `auto` measures:
on the first batch of a shape it runs every installed candidate a few times on that batch, keeps
those within `TOLERANCE` of eager FP32, and runs the fastest. The figures go to a small JSON
file in the engine cache, keyed by the input shape, the model's shape and the thread count, and
stamped with the CPU and the versions: a later process with the same stamp takes the choice
without measuring; another CPU or any version change measures again; a damaged file counts as
empty and is rewritten. Where only eager is installed there is nothing to measure.

$DERAIN_AUTO_CPU (e.g. "eager" or "eager,openvino") limits the backends auto measures: with
"eager" alone it runs eager at once, with no conversion and no probe.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from derain.engines.base import Engine, EngineError, image_to_batch, import_problem
from derain.engines.cache import engine_cache_dir
from derain.engines.eager import EagerEngine
from derain.engines.host import cpu_name, package_version
from derain.models.brn import BRN
from derain.models.files import atomic_path

log = logging.getLogger("derain")

# Largest absolute difference from eager FP32 a candidate may show on the probe batch: far inside
# one 8-bit level (1/255), so any pick writes the same 8-bit frames as eager, or within one level.
TOLERANCE = 1e-4
# Timed calls per candidate after the first (which builds the shape and is checked for accuracy):
# the least of them is the figure, the one least disturbed by other work on the machine.
PROBE_CALLS = 2
# Shapes one engine measures; past them (a folder of images of many sizes) a new size takes the
# pick measured for the nearest size in pixels: a probe costs several frames' work, which a
# single image does not repay.
MEASURED_SHAPES = 4
FILE_VERSION = 1


def _candidates() -> dict[str, tuple[str | None, str]]:
    """backend -> (the module it needs, the extra that installs it)."""
    return {"eager": (None, ""), "onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


AUTO_ENV = "DERAIN_AUTO_CPU"


def _builders() -> dict[str, Callable[[BRN, torch.device], Engine]]:
    """The backends auto measures: every CPU candidate, or those $DERAIN_AUTO_CPU names.

    Raises:
        EngineError: $DERAIN_AUTO_CPU names an unknown backend, or leaves out eager (the reference).
    """
    from derain.engines.onnx import OnnxEngine
    from derain.engines.openvino import OpenVinoEngine

    every: dict[str, Callable[[BRN, torch.device], Engine]] = {
        "eager": lambda m, d: EagerEngine(m, d, "fp32"), "onnx": lambda m, d: OnnxEngine(m, d, "fp32"),
        "openvino": lambda m, d: OpenVinoEngine(m, d, "fp32")}
    wanted = os.environ.get(AUTO_ENV, "").strip()
    if not wanted:
        return every
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    if "eager" not in names or any(name not in every for name in names):
        raise EngineError(f"${AUTO_ENV}={wanted!r}: name the backends auto may measure on the CPU, eager among them "
                          f"(any of {', '.join(every)}), or unset it")
    return {name: every[name] for name in names}


# Not measured: compile builds each frame size for tens of seconds on the CPU (a probe per shape
# would cost more than most jobs), and tensorrt needs a GPU.
NOT_PROBED = {"compile": "not measured: Inductor builds each frame size for 30-40 s on the CPU (engine='compile' forces it)",
              "tensorrt": "needs a CUDA GPU"}


def environment() -> dict[str, str | None]:
    """What a measurement holds for: the CPU and every version that changes the backends' code."""
    return {"cpu": cpu_name(), "torch": torch.__version__, "onnxruntime": package_version("onnxruntime"),
            "openvino": package_version("openvino"), "derain": package_version("derain")}


@dataclass
class Choice:
    """What `auto` runs for one input shape, and the figures behind it."""

    backend: str
    ms: dict[str, float]  # each backend that qualified: least milliseconds per call on the probe batch
    passed: dict[str, str] = field(default_factory=dict)  # each backend left out: why
    cached: bool = False  # read from the probe file, not measured in this process
    measured: str = ""  # when (UTC, ISO 8601)
    like: str = ""  # not measured for this shape: the pick measured for this one (past MEASURED_SHAPES)

    def describe(self) -> str:
        if self.like:
            return f"auto picked {self.backend} (as measured for {self.like}: this engine has measured {MEASURED_SHAPES} sizes)"
        if not self.ms:
            return f"auto picked {self.backend} (the only CPU backend here to measure)"
        figures = ", ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(self.ms.items(), key=lambda item: item[1]))
        where = f"measured {self.measured}, cached" if self.cached else "measured now"
        return f"auto picked {self.backend} ({figures}; {where})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ProbeFile:
    """The measured choices, one JSON file: {"version", "entries": {key: {"key", "environment", "choice"}}}."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or engine_cache_dir() / "auto-cpu.json"

    @staticmethod
    def name(key: Mapping[str, object]) -> str:
        return json.dumps(key, sort_keys=True)

    def _entries(self) -> dict[str, object]:
        """The file's entries; {} for a missing, unreadable or malformed file (it is rewritten on the next store)."""
        try:
            data = json.loads(self.path.read_text())
            entries = data["entries"] if data.get("version") == FILE_VERSION else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def lookup(self, key: Mapping[str, object], env: Mapping[str, object]) -> Choice | None:
        """The choice measured for `key` under `env`; None when there is none, or it was measured
        under another CPU or other versions (stale), or the entry is damaged."""
        entry = self._entries().get(self.name(key))
        try:
            if entry["key"] != dict(key) or entry["environment"] != dict(env):  # type: ignore[index]
                return None
            choice = Choice(**entry["choice"])  # type: ignore[index]
        except (KeyError, TypeError):
            return None
        figures = choice.ms.values() if isinstance(choice.ms, dict) else [None]
        if not isinstance(choice.backend, str) or not all(isinstance(v, int | float) for v in figures) or not isinstance(choice.passed, dict):
            return None
        choice.cached = True
        return choice

    def store(self, key: Mapping[str, object], env: Mapping[str, object], choice: Choice) -> None:
        """Add or replace the entry for `key`, written whole (a damaged file is replaced)."""
        entries = self._entries()
        entries[self.name(key)] = {"key": dict(key), "environment": dict(env), "choice": {**choice.to_dict(), "cached": False}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, ".json") as tmp:
            tmp.write_text(json.dumps({"version": FILE_VERSION, "entries": entries}, indent=1, sort_keys=True) + "\n")


class AutoEngine(Engine):
    """Runs each input shape on the fastest FP32 backend measured for it (see the module's notes).

    `backend` names the backend of the last shape run ("auto" before the first); `choices` holds
    every shape's `Choice`. Measuring, and building the candidates, counts as build time.

    Args:
        model: the FP32 model.
        device: the CPU.
        probe_file: where choices are remembered; default: `auto-cpu.json` in the engine cache.
        builders: backend name -> a function building its FP32 engine (default: eager, onnx,
            openvino); "eager" must be one: it is the reference the others are held to.
        why_not: None for a module that imports, else why not (`import_problem`).
        clock: what times the candidates, in seconds.
    """

    precision = "fp32"
    dtype = torch.float32
    per_shape = True

    def __init__(
        self, model: BRN, device: torch.device, probe_file: ProbeFile | None = None,
        builders: Mapping[str, Callable[[BRN, torch.device], Engine]] | None = None,
        why_not: Callable[[str], str | None] = import_problem, clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if device.type != "cpu":
            raise EngineError(f"the measured auto choice is for the CPU, not {device}")
        self.model, self.device = model, device
        self.probe_file = probe_file or ProbeFile()
        self.builders = dict(builders) if builders is not None else _builders()
        self.why_not, self.clock = why_not, clock
        self.choices: dict[tuple[int, ...], Choice] = {}
        self._engines: dict[str, Engine] = {}
        self._last: str | None = None
        self._lock = threading.Lock()
        self.build_seconds = 0.0

    @property  # type: ignore[override]
    def backend(self) -> str:
        return self._last or "auto"

    def key(self, shape: tuple[int, ...]) -> dict[str, object]:
        return {"shape": list(shape), "variant": self.model.variant, "stages": self.model.stages,
                "threads": torch.get_num_threads(), "candidates": sorted(self.builders)}

    def _run(self, batch: Tensor) -> Tensor:
        engine = self.engine_for(batch)
        return engine.run_unchecked(batch)

    def check(self, sample: Tensor | np.ndarray, batch: int = 1) -> float | None:
        """Choose the backend for the job's shape now (measuring if need be), and let it prepare
        that shape; FP32 throughout, so there is no accuracy to report (None)."""
        frame = (image_to_batch(sample, self.device) if isinstance(sample, np.ndarray) else sample)[:1].to(self.device)
        batched = frame.expand(batch, -1, -1, -1).contiguous()
        return self.engine_for(batched).check(frame, batch)

    def engine_for(self, batch: Tensor) -> Engine:
        """The engine chosen for `batch`'s shape: from this process, the probe file, or measured now on `batch`."""
        shape = tuple(batch.shape)
        with self._lock:
            choice = self.choices.get(shape)
            if choice is None:
                start = time.perf_counter()
                choice = self._choose(batch)
                log.info("%s for %s", choice.describe(), "x".join(map(str, shape)))
                if not self.choices:
                    for name, why in choice.passed.items():
                        log.info("  passed over %s: %s", name, why)
                self.choices[shape] = choice
                self.build_seconds += time.perf_counter() - start
            self._last = choice.backend
            return self._engine(choice.backend)

    def _engine(self, name: str) -> Engine:
        if name not in self._engines:
            start = time.perf_counter()
            self._engines[name] = self.builders[name](self.model, self.device)
            self.build_seconds += time.perf_counter() - start
        return self._engines[name]

    def _choose(self, batch: Tensor) -> Choice:
        shape, env = tuple(batch.shape), environment()
        key = self.key(shape)
        cached = self.probe_file.lookup(key, env)
        if cached is not None and cached.backend in self.builders:
            try:
                self._engine(cached.backend)
                return cached
            except EngineError as err:
                log.info("auto: the cached choice %s fails to build (%s); measuring again", cached.backend, err)
        measured = {s: c for s, c in self.choices.items() if not c.like}
        if len(measured) >= MEASURED_SHAPES:
            pixels = shape[0] * shape[2] * shape[3]
            near = min(measured, key=lambda s: abs(s[0] * s[2] * s[3] - pixels))
            return Choice(measured[near].backend, measured[near].ms, measured[near].passed, like="x".join(map(str, near)))
        choice = self._measure(batch)
        if choice.ms:
            self.probe_file.store(key, env, choice)
        return choice

    def _measure(self, batch: Tensor) -> Choice:
        """Time every candidate on `batch`; keep the fastest that agrees with eager FP32."""
        extras = _candidates()
        ms: dict[str, float] = {}
        passed = {name: why for name, why in NOT_PROBED.items() if name not in self.builders}
        passed.update({name: f"not measured (${AUTO_ENV})" for name in extras if name not in self.builders})
        available = []
        for name in self.builders:
            module, extra = extras.get(name, (None, ""))
            problem = self.why_not(module) if module else None
            if problem:
                passed[name] = f"{problem} (pip install 'derain[{extra}]')"
            else:
                available.append(name)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        if available == ["eager"]:
            return Choice("eager", {}, passed, measured=now)
        batch = batch.detach().to(self.device, torch.float32).contiguous()
        reference = self._engine("eager").run_unchecked(batch).float()
        for name in available:
            try:
                engine = self._engine(name)
                gap = float((engine.run_unchecked(batch).float() - reference).abs().max())
                if not gap <= TOLERANCE:
                    passed[name] = f"differs from eager fp32 by {gap:.2g} (more than {TOLERANCE:g})"
                    continue
                ms[name] = min(self._time(engine, batch) for _ in range(PROBE_CALLS))
            except Exception as err:  # noqa: BLE001 - a candidate that fails is passed over, not the job
                first = str(err).splitlines()[0] if str(err) else ""
                passed[name] = f"failed: {type(err).__name__}{': ' + first[:160] if first else ''}"
        if not ms:
            raise EngineError("auto found no CPU backend that runs here: " + "; ".join(f"{k}: {v}" for k, v in passed.items()))
        best = min(ms, key=ms.__getitem__)
        for name in [n for n in self._engines if n != best]:
            del self._engines[name]  # the losers' buffers go; a later shape builds again what it needs
        return Choice(best, ms, passed, measured=now)

    def _time(self, engine: Engine, batch: Tensor) -> float:
        start = self.clock()
        engine.run_unchecked(batch)
        return 1e3 * (self.clock() - start)
