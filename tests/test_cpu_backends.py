"""The CPU backends (eager, onnx, openvino) against eager FP32, and `auto`'s measured choice and its file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from brns import plain_brn
from torch import Tensor

from derain.engines import AutoEngine, Engine, EngineCache, EngineError, ProbeFile, TiledEngine, build_engine, import_problem
from derain.engines import auto as auto_module
from derain.engines.cache import engine_cache_dir, weights_hash
from derain.engines.eager import EagerEngine
from derain.models import BRN, derain

CPU = torch.device("cpu")
# Odd sizes on purpose: nothing may assume even sides or square frames.
SHAPES = [(1, 3, 16, 16), (3, 3, 21, 13), (1, 3, 9, 31)]
needs_onnxruntime = pytest.mark.skipif(import_problem("onnxruntime") is not None, reason="needs ONNX Runtime (pip install 'derain[onnx]')")
needs_openvino = pytest.mark.skipif(import_problem("openvino") is not None, reason="needs OpenVINO (pip install 'derain[openvino]')")


def reference(model: BRN, y: Tensor) -> Tensor:
    with torch.no_grad():
        return derain(model, y)


@pytest.mark.parametrize("backend", ["eager", pytest.param("onnx", marks=needs_onnxruntime), pytest.param("openvino", marks=needs_openvino)])
def test_every_cpu_backend_matches_eager_fp32(backend: str, shared_engine_cache: Path) -> None:
    model = plain_brn(stages=2)
    engine = build_engine(model, backend, "cpu", "auto")
    assert (engine.backend, engine.precision, engine.dtype) == (backend, "fp32", torch.float32)
    for shape in SHAPES:
        y = torch.rand(*shape)
        out = engine.run(y)
        assert out.shape == shape and out.dtype == torch.float32
        assert (out - reference(model, y)).abs().max() < 1e-5, shape
    short = torch.rand(2, 3, 21, 13)  # a short batch after a full one of its size
    assert (engine.run(short) - reference(model, short)).abs().max() < 1e-5


@needs_openvino
def test_openvino_converts_once_and_compiles_through_its_cache(shared_engine_cache: Path) -> None:
    from derain.engines.openvino import MAX_SHAPES, OpenVinoEngine

    model = plain_brn(stages=2)  # converted by the test above, or here
    OpenVinoEngine(model, CPU).run(torch.rand(1, 3, 16, 16))
    # Other tests convert other models into this cache; a BRN's stages share their weights, so a
    # one-stage model of the same weights has the same hash: the stages tell the entries apart.
    [entry] = [p.parent for p in engine_cache_dir().glob("*/model.xml")
               if {k: json.loads((p.parent / "meta.json").read_text())["key"][k] for k in ("weights", "stages")}
               == {"weights": weights_hash(model), "stages": model.stages}]
    assert (entry / "model.bin").is_file() and "model.bin" in json.loads((entry / "meta.json").read_text())["companions"]
    mtime = (entry / "model.xml").stat().st_mtime_ns
    again = OpenVinoEngine(model, CPU)
    assert (entry / "model.xml").stat().st_mtime_ns == mtime  # no new conversion
    assert again.config["CACHE_DIR"] == str(engine_cache_dir() / "openvino")
    assert any((engine_cache_dir() / "openvino").iterdir())  # OpenVINO's compiled blobs
    for side in range(8, 8 + MAX_SHAPES + 1):
        again.run(torch.rand(1, 3, side, 8))
    assert len(again._requests) == MAX_SHAPES and (1, 3, 8 + MAX_SHAPES, 8) in again._requests


@needs_openvino
@pytest.mark.filterwarnings("ignore::derain.engines.LossyEngineWarning")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_openvino_below_fp32_runs_only_on_a_cpu_with_the_instructions(precision: str, shared_engine_cache: Path) -> None:
    import openvino as ov

    from derain.engines.openvino import CAPABILITIES

    model = plain_brn(stages=2)
    if CAPABILITIES[precision] not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(EngineError, match=rf"^precision='{precision}' on the openvino engine needs a CPU with .*use precision='fp32'$"):
            build_engine(model, "openvino", "cpu", precision)
        return
    engine = build_engine(model, "openvino", "cpu", precision, allow_lossy=True)
    y = torch.rand(1, 3, 16, 16)
    assert engine.precision == precision and engine.guard is not None
    assert engine.check(y) is not None and engine.accuracy_db > 30  # type: ignore[operator]


def test_openvino_without_its_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from derain.engines import openvino

    monkeypatch.setattr(openvino, "import_problem", lambda module: "not installed")
    with pytest.raises(EngineError, match=r"^engine='openvino' needs OpenVINO, which is not installed: pip install 'derain\[openvino\]'$"):
        build_engine(plain_brn(stages=1), "openvino", "cpu")


def test_a_companion_file_is_covered_by_the_entry(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = {"backend": "x"}

    def write(path: Path) -> None:
        path.write_bytes(b"graph")
        path.with_suffix(".bin").write_bytes(b"weights")

    path = cache.store(key, "m.xml", write)
    assert cache.lookup(key, "m.xml") == path
    path.with_suffix(".bin").write_bytes(b"weightz")
    assert cache.lookup(key, "m.xml") is None and not path.parent.exists()


class Clock:
    """auto's clock in the tests: only the fakes move it, so a busy machine changes no choice."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fake(Engine):
    """Eager FP32 that takes `delay` seconds on the test clock, or is off by `offset`, and counts its calls."""

    precision, dtype, device = "fp32", torch.float32, CPU

    def __init__(self, model: BRN, name: str, calls: list[str], delay: float = 0.0, offset: float = 0.0) -> None:
        self.inner, self.backend, self.delay, self.offset, self.calls = EagerEngine(model, CPU), name, delay, offset, calls
        self.build_seconds = 0.0

    def _run(self, batch: Tensor) -> Tensor:
        self.calls.append(self.backend)
        CLOCK.now += self.delay
        return self.inner.run(batch) + self.offset


CLOCK = Clock()


Builders = dict[str, Callable[[BRN, torch.device], Engine]]


def fakes(calls: list[str], built: list[str] | None = None) -> Builders:
    """eager slow (the reference), onnx fast and exact, openvino fast and wrong by 1e-3; to run with clock=CLOCK."""
    built = built if built is not None else []

    def make(name: str, **kwargs: float) -> Callable[[BRN, torch.device], Engine]:
        return lambda model, device: built.append(name) or Fake(model, name, calls=calls, **kwargs)  # type: ignore[func-returns-value]

    return {"eager": make("eager", delay=0.05), "onnx": make("onnx", delay=0.01), "openvino": make("openvino", offset=1e-3)}


def test_auto_runs_the_fastest_backend_that_agrees_with_eager(tmp_path: Path) -> None:
    model = plain_brn(stages=1)
    probes = ProbeFile(tmp_path / "auto.json")
    engine = AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK)
    assert engine.backend == "auto"
    y = torch.rand(1, 3, 12, 10)
    assert (engine.run(y) - reference(model, y)).abs().max() < 1e-5
    choice = engine.choices[(1, 3, 12, 10)]
    assert engine.backend == choice.backend == "onnx" and not choice.cached
    assert choice.ms == pytest.approx({"eager": 50, "onnx": 10})
    assert choice.passed["openvino"].startswith("differs from eager fp32 by 0.001")
    assert "compile" in choice.passed and "tensorrt" in choice.passed
    assert choice.describe().startswith("auto picked onnx (onnx ") and "measured now" in choice.describe()
    assert engine.build_seconds > 0  # the probe counts as build time
    [entry] = json.loads(probes.path.read_text())["entries"].values()
    assert entry["key"]["shape"] == [1, 3, 12, 10] and entry["choice"]["backend"] == "onnx"
    assert entry["environment"] == auto_module.environment()


def test_auto_passes_over_what_is_not_installed_or_fails(tmp_path: Path) -> None:
    def broken(model: BRN, device: torch.device) -> Engine:
        raise EngineError("cannot build here")

    builders = {**fakes([]), "onnx": broken}
    engine = AutoEngine(plain_brn(stages=1), CPU, ProbeFile(tmp_path / "a.json"), builders,
                        why_not=lambda module: "not installed" if module == "openvino" else None, clock=CLOCK)
    engine.run(torch.rand(1, 3, 8, 8))
    choice = engine.choices[(1, 3, 8, 8)]
    assert choice.backend == "eager"
    assert choice.passed["openvino"] == "not installed (pip install 'derain[openvino]')"
    assert choice.passed["onnx"] == "failed: EngineError: cannot build here"


def test_auto_takes_a_remembered_choice_without_measuring(tmp_path: Path) -> None:
    model, probes, y = plain_brn(stages=1), ProbeFile(tmp_path / "auto.json"), torch.rand(2, 3, 8, 12)
    AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK).run(y)
    calls: list[str] = []
    built: list[str] = []
    again = AutoEngine(model, CPU, probes, fakes(calls, built), clock=CLOCK)
    again.run(y)
    assert built == ["onnx"] and calls == ["onnx"]  # nothing else built or run
    assert again.choices[(2, 3, 8, 12)].cached and "cached" in again.choices[(2, 3, 8, 12)].describe()


def test_auto_measures_again_after_a_version_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, probes, y = plain_brn(stages=1), ProbeFile(tmp_path / "auto.json"), torch.rand(1, 3, 8, 8)
    AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK).run(y)
    now = auto_module.environment()
    monkeypatch.setattr(auto_module, "environment", lambda: {**now, "openvino": "2099.1"})
    calls: list[str] = []
    again = AutoEngine(model, CPU, probes, fakes(calls), clock=CLOCK)
    again.run(y)
    assert not again.choices[(1, 3, 8, 8)].cached and "eager" in calls
    [entry] = json.loads(probes.path.read_text())["entries"].values()
    assert entry["environment"]["openvino"] == "2099.1"  # the stale entry replaced


def test_auto_measures_a_new_shape_and_keeps_the_old(tmp_path: Path) -> None:
    model, probes = plain_brn(stages=1), ProbeFile(tmp_path / "auto.json")
    AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK).run(torch.rand(1, 3, 8, 8))
    calls: list[str] = []
    again = AutoEngine(model, CPU, probes, fakes(calls), clock=CLOCK)
    again.run(torch.rand(1, 3, 8, 10))
    assert not again.choices[(1, 3, 8, 10)].cached and "eager" in calls
    entries = json.loads(probes.path.read_text())["entries"].values()
    assert sorted(e["key"]["shape"] for e in entries) == [[1, 3, 8, 8], [1, 3, 8, 10]]


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"version": 1, "entries": []}', '{"version": 1, "entries": {"x": 1}}', "BROKEN-ENTRY", "BAD-FIGURES"])
def test_a_damaged_probe_file_is_measured_over_and_rewritten(tmp_path: Path, damage: str) -> None:
    model, probes, y = plain_brn(stages=1), ProbeFile(tmp_path / "auto.json"), torch.rand(1, 3, 8, 8)
    if damage in ("BROKEN-ENTRY", "BAD-FIGURES"):  # a whole file whose entry for this shape lost its figures, or holds words
        AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK).run(y)
        data = json.loads(probes.path.read_text())
        for entry in data["entries"].values():
            entry["choice"] = {"backend": "onnx"} if damage == "BROKEN-ENTRY" else {**entry["choice"], "ms": {"onnx": "fast"}}
        damage = json.dumps(data)
    probes.path.write_text(damage)
    engine = AutoEngine(model, CPU, probes, fakes([]), clock=CLOCK)
    assert (engine.run(y) - reference(model, y)).abs().max() < 1e-5
    assert not engine.choices[(1, 3, 8, 8)].cached
    assert json.loads(probes.path.read_text())["version"] == 1


def test_auto_is_measured_per_tile_and_names_its_pick_through_tiling(tmp_path: Path) -> None:
    engine = TiledEngine(AutoEngine(plain_brn(stages=1), CPU, ProbeFile(tmp_path / "a.json"), fakes([]), clock=CLOCK), tile=80)
    assert engine.backend == "auto" and engine.per_shape
    engine.run(torch.rand(1, 3, 8, 8))
    assert engine.backend == "onnx"


@needs_onnxruntime
@needs_openvino
def test_auto_on_the_cpu_measures_the_real_backends(shared_engine_cache: Path) -> None:
    model = plain_brn(stages=2)
    engine = build_engine(model, "auto", "cpu")
    assert isinstance(engine, AutoEngine)
    y = torch.rand(1, 3, 15, 17)
    assert engine.check(y) is None  # measures the shape before the job, as `derain video` does
    choice = engine.choices[(1, 3, 15, 17)]
    assert set(choice.ms) == {"eager", "onnx", "openvino"} and engine.backend == choice.backend
    assert (engine.run(y) - reference(model, y)).abs().max() < 1e-4
    assert ProbeFile().lookup(engine.key((1, 3, 15, 17)), auto_module.environment()) is not None


def test_auto_below_fp32_on_the_cpu_stays_eager() -> None:
    notes: list[str] = []
    engine = build_engine(plain_brn(stages=1), "auto", "cpu", "bf16", notes=notes)
    assert engine.backend == "eager" and engine.precision == "bf16" and notes


def test_derain_auto_cpu_limits_what_auto_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERAIN_AUTO_CPU", "eager")  # as every test but the measuring ones runs
    engine = build_engine(plain_brn(stages=1), "auto", "cpu")
    assert isinstance(engine, AutoEngine) and set(engine.builders) == {"eager"}
    engine.run(torch.rand(1, 3, 8, 8))
    choice = engine.choices[(1, 3, 8, 8)]
    assert (choice.backend, choice.ms) == ("eager", {}) and choice.passed["openvino"] == "not measured ($DERAIN_AUTO_CPU)"
    assert not ProbeFile().path.exists()  # nothing measured, nothing to remember
    for wrong in ("onnx", "eager,fast"):
        monkeypatch.setenv("DERAIN_AUTO_CPU", wrong)
        with pytest.raises(EngineError, match=r"^\$DERAIN_AUTO_CPU=.*eager among them"):
            build_engine(plain_brn(stages=1), "auto", "cpu")


def test_past_a_few_sizes_auto_takes_the_nearest_measured_pick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_module, "MEASURED_SHAPES", 2)
    calls: list[str] = []
    engine = AutoEngine(plain_brn(stages=1), CPU, ProbeFile(tmp_path / "a.json"), fakes(calls), clock=CLOCK)
    for side in (8, 24):
        engine.run(torch.rand(1, 3, side, side))
    calls.clear()
    engine.run(torch.rand(1, 3, 20, 22))
    choice = engine.choices[(1, 3, 20, 22)]
    assert (choice.backend, choice.like, calls) == ("onnx", "1x3x24x24", ["onnx"])  # nothing measured
    assert len(json.loads((tmp_path / "a.json").read_text())["entries"]) == 2  # and nothing remembered
