"""Engines on the CPU: eager and ONNX agree with the FP32 model; cache, tiling, auto choice."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import math
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from brns import plain_brn, random_brn
from conftest import OFFICIAL, RAIN100L, needs_official, needs_rain100l

from derain.cli import main
from derain.engines import (
    EngineCache,
    EngineError,
    LossyEngineWarning,
    TiledEngine,
    build_engine,
    check_accuracy,
    choose_backend,
    export_onnx,
    import_problem,
    psnr_vs_fp32,
)
from derain.engines.base import built_shape_for, pad_batch
from derain.engines.cache import weights_hash
from derain.engines.tiling import tile_starts
from derain.models import derain, load_model
from derain.models.data import read_image
from derain.models.errors import InputError
from derain.models.metrics import psnr_y, to_uint8_truncated

CUDA = torch.cuda.is_available()


def reference(model, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return derain(model, y)


def test_eager_fp32_matches_model() -> None:
    model = plain_brn(stages=2)
    engine = build_engine(model, "eager", "cpu", "fp32")
    y = torch.rand(2, 3, 19, 14)
    assert (engine.run(y) - reference(model, y)).abs().max() < 1e-5
    assert (engine.backend, engine.precision, engine.dtype) == ("eager", "fp32", torch.float32)


def test_eager_bf16_is_close_and_guarded() -> None:
    model = random_brn(stages=2)
    engine = build_engine(model, "eager", "cpu", "bf16")
    y = torch.rand(1, 3, 16, 16)
    assert engine.run_unchecked(y).dtype == torch.bfloat16
    assert psnr_vs_fp32(engine, model, y) < 45  # random weights amplify bf16 rounding
    messages: list[str] = []
    with pytest.raises(EngineError, match="allow_lossy=True"):
        check_accuracy(engine, model, y)
    assert check_accuracy(engine, model, y, allow_lossy=True, warn=messages.append) is not None
    assert messages and "45 dB" in messages[0]
    assert check_accuracy(build_engine(model, "eager", "cpu", "fp32"), model, y) is None


def test_the_engine_guards_its_first_batch_once() -> None:
    model = random_brn(stages=2)
    y = torch.rand(2, 3, 16, 16)
    strict = build_engine(model, "eager", "cpu", "bf16")
    assert strict.accuracy_db is None
    for _ in range(2):  # refused, and refused again: a failed engine never runs
        with pytest.raises(EngineError, match=r"^precision='bf16' on the eager engine differs from fp32 by .* dB.*allow_lossy=True"):
            strict.run(y)
    assert strict.accuracy_db == pytest.approx(psnr_vs_fp32(strict, model, y[:1])) and strict.accuracy_db < 45

    lossy = build_engine(model, "eager", "cpu", "bf16", allow_lossy=True)
    with pytest.warns(LossyEngineWarning, match="45 dB"):
        out = lossy.run(y)
    assert out.shape == y.shape and lossy.accuracy_db == strict.accuracy_db
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lossy.run(y)  # once only

    early = build_engine(model, "eager", "cpu", "bf16", None, True)  # the old positional order, then allow_lossy
    with pytest.warns(LossyEngineWarning):
        assert early.check(y, batch=2) == strict.accuracy_db
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        early.run(y)

    exact = build_engine(model, "eager", "cpu", "fp32")
    assert exact.check(y) is None and exact.accuracy_db is None and exact.run(y).dtype == torch.float32


def test_a_tiled_engine_guards_its_first_tile() -> None:
    model = random_brn(stages=1)
    engine = build_engine(model, "eager", "cpu", "bf16", tile=80)
    assert isinstance(engine, TiledEngine)
    with pytest.raises(EngineError, match="allow_lossy=True"):
        engine.run(torch.rand(1, 3, 100, 120))
    assert engine.accuracy_db is not None and engine.accuracy_db < 45
    lossy = build_engine(model, "eager", "cpu", "bf16", tile=80, allow_lossy=True)
    with pytest.warns(LossyEngineWarning):
        assert lossy.check(torch.rand(1, 3, 100, 120)) is not None


def test_calling_an_engine_on_images_keeps_their_shape_and_dtype() -> None:
    model = plain_brn(stages=1)
    engine = build_engine(model, "eager", "cpu", "fp32")
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)
    expected = reference(model, torch.from_numpy(rgb8).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    out = engine(rgb8)
    assert out.dtype == np.uint8 and out.shape == rgb8.shape
    assert np.array_equal(out, np.floor(expected * 255 + 0.5).astype(np.uint8))
    out16 = engine(rgb8.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(np.int64) - np.round(expected * 65535)).max() <= 1
    for dtype in (np.float32, np.float64):
        image = (rgb8 / 255).astype(dtype)
        result = engine(image)
        assert result.dtype == dtype and result.shape == image.shape
        assert np.abs(result - expected).max() < 1e-5 and 0 <= result.min() and result.max() <= 1
    bgr_view = rgb8[:, :, ::-1][:, :, ::-1]  # a view with negative strides, as BGR<->RGB slicing gives
    assert np.array_equal(engine(bgr_view), out)
    batch = torch.rand(2, 3, 12, 12)
    assert torch.equal(engine(batch), engine.run(batch))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.int32), np.zeros((3, 8, 8), np.float32),
     np.zeros((0, 8, 3), np.uint8), torch.zeros(3, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), [[0, 0, 0]]],
)
def test_calling_an_engine_on_what_is_not_an_image_is_one_line(bad: object) -> None:
    engine = build_engine(plain_brn(stages=1), "eager", "cpu", "fp32")
    with pytest.raises(InputError, match=r"^engine input: [^\n]*give an? "):
        engine(bad)  # type: ignore[call-overload]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cudnn_flags_hold_only_while_the_engine_works(precision: str) -> None:
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark, cudnn.allow_tf32
    engine = build_engine(plain_brn(stages=1), "eager", "cpu", precision, allow_lossy=True)
    seen: list[tuple[bool, bool]] = []
    engine.module.register_forward_pre_hook(lambda *_: seen.append((cudnn.benchmark, cudnn.allow_tf32)))
    assert (cudnn.benchmark, cudnn.allow_tf32) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossyEngineWarning)
        engine.run(torch.rand(1, 3, 12, 12))
    assert (cudnn.benchmark, cudnn.allow_tf32) == before
    assert seen[0] == (True, before[1] and precision != "fp32")


def test_onnx_export_leaves_stdout_to_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread printing while a model exports must reach the process's stdout."""
    ours = io.StringIO()
    monkeypatch.setattr(sys, "stdout", ours)
    export = torch.onnx.export

    def export_while_another_thread_prints(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - torch.onnx.export's signature
        thread = threading.Thread(target=print, args=("from another thread",))
        thread.start()
        thread.join()
        assert sys.stdout is ours
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_while_another_thread_prints)
    export_onnx(plain_brn(stages=1), tmp_path / "m.onnx", dynamic=False, shape=(1, 3, 16, 16))
    assert "from another thread" in ours.getvalue()


@pytest.fixture
def broken_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch-tensorrt that is installed but fails as it loads, as a build for another torch does."""
    (tmp_path / "torch_tensorrt").mkdir()
    (tmp_path / "torch_tensorrt" / "__init__.py").write_text('raise ImportError("undefined symbol: _ZN5torch3jit; built for torch 2.0")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch_tensorrt", raising=False)


def test_a_tensorrt_that_fails_to_import_is_passed_over(broken_tensorrt: None) -> None:
    problem = import_problem("torch_tensorrt")
    assert problem is not None and problem.startswith("installed but fails to import (ImportError: undefined symbol")
    backend, passed = choose_backend(torch.device("cuda"))
    assert backend != "tensorrt" and "fails to import" in passed[0]
    from derain.engines.tensorrt import TensorRTEngine

    with pytest.raises(EngineError, match=r"^engine='tensorrt': torch-tensorrt is installed but fails to import .*pip install"):
        TensorRTEngine(plain_brn(stages=1), torch.device("cuda"))


def test_short_batch_runs_on_a_built_larger_batch() -> None:
    """compile and tensorrt share this choice; they only run on a GPU, the choice runs anywhere."""
    built = [(4, 3, 48, 64), (1, 3, 24, 32)]
    assert built_shape_for((4, 3, 48, 64), built) == (4, 3, 48, 64)
    assert built_shape_for((3, 3, 48, 64), built) == (4, 3, 48, 64)
    assert built_shape_for((2, 3, 24, 32), built) is None  # no larger batch of this size
    assert built_shape_for((1, 3, 48, 32), built) is None
    batch = torch.rand(3, 3, 8, 8)
    padded = pad_batch(batch, 4)
    assert padded.shape == (4, 3, 8, 8) and torch.equal(padded[:3], batch) and not padded[3].any()
    assert pad_batch(batch, 3) is batch


def test_guard_runs_the_jobs_batch_shape() -> None:
    """An engine built per shape must build the job's batch shape in the guard, not batch 1."""
    model = plain_brn(stages=1)
    engine = build_engine(model, "eager", "cpu", "bf16")
    shapes: list[tuple[int, ...]] = []
    run = engine.run_unchecked
    engine.run_unchecked = lambda batch: shapes.append(tuple(batch.shape)) or run(batch)  # type: ignore[method-assign]
    y = torch.rand(1, 3, 16, 20)
    alone = psnr_vs_fp32(engine, model, y)
    assert psnr_vs_fp32(engine, model, y, batch=3) == pytest.approx(alone)
    assert shapes == [(1, 3, 16, 20), (3, 3, 16, 20)]
    assert engine.check(y, batch=4) is not None and shapes[-1] == (4, 3, 16, 20)


def test_onnx_engine_matches_model_and_uses_cache(tmp_path: Path) -> None:
    model = plain_brn(stages=2)
    cache = EngineCache(tmp_path / "engines")
    from derain.engines.onnx import OnnxEngine

    engine = OnnxEngine(model, torch.device("cpu"), cache=cache)
    for shape in ((1, 3, 16, 16), (3, 3, 21, 13)):
        y = torch.rand(*shape)
        assert (engine.run(y) - reference(model, y)).abs().max() < 1e-5
    entries = [p for p in cache.root.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["key"]["weights"] == weights_hash(model) and meta["key"]["backend"] == "onnx"
    # A second engine for the same weights reuses the entry (same file, untouched).
    mtime = (entries[0] / "model.onnx").stat().st_mtime_ns
    OnnxEngine(model, torch.device("cpu"), cache=cache)
    assert (entries[0] / "model.onnx").stat().st_mtime_ns == mtime
    with pytest.raises(EngineError, match="fp32 only"):
        OnnxEngine(model, torch.device("cpu"), "fp16", cache=cache)
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == torch.get_num_threads()
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_cache_invalidation_and_corruption(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = {"backend": "x", "weights": "abc", "shape": [1, 3, 8, 8]}
    path = cache.store(key, "a.bin", lambda p: p.write_bytes(b"engine bytes"))
    assert cache.lookup(key, "a.bin") == path
    assert cache.lookup({**key, "shape": [1, 3, 8, 9]}, "a.bin") is None  # another shape: a miss
    path.write_bytes(b"engine bytez")  # damaged on disk
    assert cache.lookup(key, "a.bin") is None and not path.parent.exists()
    path = cache.store(key, "a.bin", lambda p: p.write_bytes(b"engine bytes"))
    (path.parent / "meta.json").write_text("{not json")
    assert cache.lookup(key, "a.bin") is None
    path = cache.store(key, "a.bin", lambda p: p.write_bytes(b"engine bytes"))
    meta = json.loads((path.parent / "meta.json").read_text())
    meta["key"]["weights"] = "other"  # a digest collision or a hand-edited entry
    (path.parent / "meta.json").write_text(json.dumps(meta))
    assert cache.lookup(key, "a.bin") is None

    def fail(p: Path) -> None:
        p.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.store(key, "a.bin", fail)
    assert list(tmp_path.iterdir()) == []  # an interrupted build leaves nothing behind


def test_corrupt_onnx_entry_is_rebuilt(tmp_path: Path) -> None:
    from derain.engines.onnx import OnnxEngine

    model = plain_brn(stages=1)
    cache = EngineCache(tmp_path)
    OnnxEngine(model, torch.device("cpu"), cache=cache)
    (entry,) = [p for p in tmp_path.iterdir()]
    (entry / "model.onnx").write_bytes(b"garbage")
    engine = OnnxEngine(model, torch.device("cpu"), cache=cache)
    y = torch.rand(1, 3, 8, 8)
    assert (engine.run(y) - reference(model, y)).abs().max() < 1e-5


def test_weights_hash_follows_weights() -> None:
    a, b = random_brn(seed=1), random_brn(seed=1)
    assert weights_hash(a) == weights_hash(b)
    assert weights_hash(a) != weights_hash(random_brn(seed=2))


@pytest.mark.parametrize(
    "device, has, expected",
    [
        ("cpu", {"torch_tensorrt", "triton"}, "eager"),
        ("cpu", set(), "eager"),
        ("cuda", {"torch_tensorrt", "triton"}, "tensorrt"),
        ("cuda", {"torch_tensorrt"}, "tensorrt"),
        ("cuda", {"triton"}, "compile"),
        ("cuda", set(), "eager"),
    ],
)
def test_auto_choice(device: str, has: set[str], expected: str) -> None:
    backend, passed = choose_backend(torch.device(device), lambda module: None if module in has else "not installed")
    assert backend == expected
    if expected != "tensorrt":
        assert passed, "auto must say why it passed over the better backends"
    if device == "cuda" and expected == "eager":
        assert any("torch-tensorrt" in p for p in passed) and any("Triton" in p for p in passed)


@pytest.mark.skipif(CUDA, reason="checks the messages on a machine without CUDA")
def test_gpu_backends_refuse_cpu_clearly() -> None:
    model = random_brn(stages=1)
    with pytest.raises(EngineError, match="engine='tensorrt'"):
        build_engine(model, "tensorrt", "cpu")
    with pytest.raises(EngineError, match="engine='compile' on the CPU runs fp32 or bf16, not fp16: use precision='fp32'"):
        build_engine(model, "compile", "cpu", "fp16")


def test_tile_starts_cover_everything() -> None:
    for size, tile, overlap in ((100, 40, 8), (40, 40, 8), (41, 40, 8), (7, 40, 8)):
        starts = tile_starts(size, tile, overlap)
        covered = set()
        for s in starts:
            covered |= set(range(s, min(s + tile, size)))
        assert covered == set(range(size))


def test_tiled_matches_untiled() -> None:
    model = plain_brn(stages=2)
    engine = build_engine(model, "eager", "cpu", "fp32")
    y = torch.rand(1, 3, 70, 90)
    tiled = TiledEngine(engine, tile=48, overlap=16).run(y)
    untiled = engine.run(y)
    assert tiled.shape == untiled.shape
    psnr = 10 * math.log10(1 / float(torch.mean((tiled - untiled) ** 2)))
    assert psnr > 30


@needs_official
@needs_rain100l
def test_tiled_within_half_db_on_real_image() -> None:
    model = load_model(str(OFFICIAL / "BRN_R100L.pth"))
    engine = build_engine(model, "eager", "cpu", "fp32")
    rainy = torch.from_numpy(read_image(RAIN100L / "input" / "1.png")).permute(2, 0, 1)[None][:, :, :160, :240]
    clean = (read_image(RAIN100L / "target" / "1.png")[:160, :240] * 255).round().astype("uint8")

    def score(out: torch.Tensor) -> float:
        return psnr_y(to_uint8_truncated(out[0].permute(1, 2, 0).numpy()), clean)

    untiled, tiled = score(engine.run(rainy)), score(TiledEngine(engine, tile=96, overlap=32).run(rainy))
    assert abs(untiled - tiled) < 0.5


def test_export_onnx_cli_runs_in_onnxruntime(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "brn.onnx"
    assert main(["export", "--format", "onnx", "--weights", str(tiny_checkpoint), "-o", str(out), "--dynamic"]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "rainy" and inp.shape[1] == 3 and all(isinstance(d, str) for d in (inp.shape[0], *inp.shape[2:]))
    assert session.get_outputs()[0].name == "clean"
    model = load_model(str(tiny_checkpoint))
    y = torch.rand(2, 3, 23, 31)
    (clean,) = session.run(None, {"rainy": y.numpy()})
    assert abs(clean - reference(model, y).numpy()).max() < 1e-5
    assert main(["export", "--weights", str(tiny_checkpoint), "-o", str(out)]) == 2  # exists


def test_an_interrupted_export_keeps_the_file_it_would_replace(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "brn.onnx"
    out.write_bytes(b"the previous export")

    def ctrl_c_halfway(module, args, f, **kwargs):  # noqa: ANN001, ANN003, ANN202 - torch.onnx.export's signature
        Path(f).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", ctrl_c_halfway)
    assert main(["export", "--weights", str(tiny_checkpoint), "-o", str(out), "--overwrite"]) == 130
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brn.onnx", "tiny.safetensors"]


def test_static_onnx_export(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "static.onnx"
    assert main(["export", "--weights", str(tiny_checkpoint), "-o", str(out), "--shape", "2x3x24x32"]) == 0
    assert ort.InferenceSession(str(out)).get_inputs()[0].shape == [2, 3, 24, 32]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.compile with CUDA graphs)")
@pytest.mark.filterwarnings("ignore::derain.engines.LossyEngineWarning")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_compile_matches_fp32(precision: str) -> None:
    model = plain_brn(stages=2)
    engine = build_engine(model, "compile", "cuda", precision, allow_lossy=True)
    y = torch.rand(2, 3, 64, 96, device="cuda")
    assert psnr_vs_fp32(engine, model, y, batch=2) > 35
    before = engine.build_seconds
    out = engine.run(y[:1])  # a short batch runs padded on the graph of batch 2: no new build
    assert out.shape == (1, 3, 64, 96) and engine.build_seconds == before
    assert (out.float() - engine.run(y)[:1].float()).abs().max() < 1e-2


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is None, reason="needs torch-tensorrt (pip install 'derain[tensorrt]')")
def test_tensorrt_fp16_matches_fp32_and_caches(tmp_path: Path) -> None:
    model = plain_brn(stages=2)
    cache = EngineCache(tmp_path)
    from derain.engines.tensorrt import TensorRTEngine

    engine = TensorRTEngine(model, torch.device("cuda"), "fp16", cache=cache)
    y = torch.rand(2, 3, 64, 96, device="cuda")
    assert psnr_vs_fp32(engine, model, y, batch=2) > 40
    assert engine.run(y[:1]).shape == (1, 3, 64, 96)  # a short batch runs padded
    again = TensorRTEngine(model, torch.device("cuda"), "fp16", cache=cache)
    again.run(y)
    assert again.build_seconds < engine.build_seconds


def test_compile_takes_more_shapes_than_dynamos_recompile_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shape compiles a code object of its own: Dynamo's limit of graphs per code object
    (eight, and fullgraph=True raises at the ninth) binds neither an engine nor the process."""
    import torch._dynamo

    limit = torch._dynamo.config.recompile_limit
    # Dynamo's own Python backend: the same tracing, guards and limit as Inductor, without C++ builds.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    model = plain_brn(stages=1)
    engine = build_engine(model, "compile", "cpu", "fp32")
    for side in range(4, 4 + limit + 1):
        y = torch.rand(1, 3, side, side + 1)
        assert (engine.run(y) - reference(model, y)).abs().max() < 1e-4
    assert torch._dynamo.config.recompile_limit == limit


@pytest.mark.slow  # about 60 s on a shared 2-core CPU: Inductor builds C++ kernels per shape
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compile_on_the_cpu_matches_eager(precision: str) -> None:
    model = plain_brn(stages=1)
    engine = build_engine(model, "compile", "cpu", precision)
    y = torch.rand(2, 3, 13, 17)  # odd sides, as the other CPU backends are tested (test_cpu_backends.py)
    assert psnr_vs_fp32(engine, model, y, batch=2) > (80 if precision == "fp32" else 45)
    before = engine.build_seconds
    out = engine.run(y[:1])  # a short batch runs padded on the graph of batch 2: no new build
    assert out.shape == (1, 3, 13, 17) and out.dtype == engine.dtype and engine.build_seconds == before
