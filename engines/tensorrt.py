"""TensorRT through torch-tensorrt's dynamo path: FP16 engines built once and kept on disk.

The model is cast to half before export (explicit typing: TensorRT's weak typing is
deprecated), exported with torch.export and compiled by `torch_tensorrt.dynamo.compile` for one
static (batch, height, width). The result is saved with `torch_tensorrt.save` into the engine
cache, keyed by weights, shape, precision, GPU and library versions; the timing cache lives
beside it so that rebuilds for new shapes are faster.
"""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path

import torch
from torch import Tensor

from derain.engines.base import PRECISIONS, Engine, EngineError, built_shape_for, import_problem, pad_batch
from derain.engines.cache import EngineCache, device_key, weights_hash
from derain.models.brn import BRN, Derainer
from derain.models.files import atomic_path

ARTEFACT = "engine.ep"


def unavailable() -> str | None:
    """None when torch-tensorrt imports; else an EngineError message saying why not and what to do."""
    problem = import_problem("torch_tensorrt")
    if problem is None:
        return None
    return f"torch-tensorrt is {problem}; install the build for torch {torch.__version__}: pip install 'derain[tensorrt]'"


def library_versions() -> dict[str, str]:
    import tensorrt
    import torch_tensorrt

    return {"torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__, "tensorrt": tensorrt.__version__}


def _compile_kwargs(example: Tensor, dtype: torch.dtype, timing_cache: Path) -> dict[str, object]:
    import torch_tensorrt

    params = inspect.signature(torch_tensorrt.dynamo.compile).parameters
    kwargs: dict[str, object] = {"arg_inputs": [example], "min_block_size": 1, "timing_cache_path": str(timing_cache)}
    # 2.5-2.9 take use_explicit_typing (and refuse enabled_precisions beside it from 2.8);
    # newer releases are strongly typed only and take neither: the half-cast graph says fp16.
    if "use_explicit_typing" in params:
        kwargs["use_explicit_typing"] = True
    elif "enabled_precisions" in params:
        kwargs["enabled_precisions"] = {dtype}
    return kwargs


def timing_cache_path(root: Path, device: torch.device) -> Path:
    """One timing cache per TensorRT version and GPU architecture: TensorRT does not ignore a
    mismatched cache when torch-tensorrt loads it."""
    import tensorrt

    major, minor = torch.cuda.get_device_capability(device)
    return root / f"timing_cache-trt{tensorrt.__version__}-sm{major}{minor}.bin"


def export_program(
    model: BRN, shape: tuple[int, int, int, int], device: torch.device, dtype: torch.dtype
) -> tuple[torch.export.ExportedProgram, Tensor]:
    """The derainer exported for one input shape, with the example input it was traced on."""
    module = Derainer(copy.deepcopy(model)).eval().to(device=device, dtype=dtype)
    example = torch.rand(*shape, device=device, dtype=dtype)
    return torch.export.export(module, (example,)), example


class TensorRTEngine(Engine):
    """torch-tensorrt engines, one per static batch shape, kept in the engine cache."""

    backend = "tensorrt"
    per_shape = True

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp16", cache: EngineCache | None = None) -> None:
        problem = unavailable()
        if problem:
            raise EngineError(f"engine='tensorrt': {problem}")
        if device.type != "cuda":
            raise EngineError("engine='tensorrt' needs a CUDA GPU; use engine='eager' on the CPU")
        self.model = model
        self.device, self.precision, self.dtype = device, precision, PRECISIONS[precision]
        self.cache = cache or EngineCache()
        self.modules: dict[tuple[int, ...], torch.nn.Module] = {}
        self.build_seconds = 0.0
        self._weights = weights_hash(model)

    def key(self, shape: tuple[int, int, int, int]) -> dict[str, object]:
        return {
            "backend": "tensorrt", "weights": self._weights, "variant": self.model.variant,
            "stages": self.model.stages, "shape": list(shape), "precision": self.precision,
            **device_key(self.device), **library_versions(),
        }

    def build(self, shape: tuple[int, int, int, int]) -> torch.nn.Module:
        """The engine for one static shape: from the cache, or built now and cached."""
        # torch.export wants ordinary tensors, not inference-mode ones; and the runtime uses the
        # current device unless told otherwise, which matters for cuda:N with N > 0.
        with torch.inference_mode(False), torch.no_grad(), torch.cuda.device(self.device):
            return self._build(shape)

    def _build(self, shape: tuple[int, int, int, int]) -> torch.nn.Module:
        import torch_tensorrt

        start = time.perf_counter()
        key = self.key(shape)
        path = self.cache.lookup(key, ARTEFACT)
        module = None
        if path is not None:
            try:
                module = torch_tensorrt.load(str(path)).module()
            except Exception:  # built by an incompatible runtime, or damaged in a way the hash missed
                self.cache.remove(key)
        if module is None:
            program, example = export_program(self.model, shape, self.device, self.dtype)
            self.cache.root.mkdir(parents=True, exist_ok=True)
            timing_cache = timing_cache_path(self.cache.root, self.device)
            compiled = torch_tensorrt.dynamo.compile(program, **_compile_kwargs(example, self.dtype, timing_cache))

            def write(target: Path) -> None:
                torch_tensorrt.save(compiled, str(target), output_format="exported_program", arg_inputs=[example])

            self.cache.store(key, ARTEFACT, write)
            module = compiled
        self.modules[shape] = module
        self.build_seconds += time.perf_counter() - start
        return module

    def _run(self, batch: Tensor) -> Tensor:
        shape = tuple(batch.shape)
        # A short last batch runs on the engine of the full batch, padded.
        full = built_shape_for(shape, self.modules)
        if full is None:
            self.build(shape)  # type: ignore[arg-type]
            full = shape
        with torch.inference_mode(), torch.cuda.device(self.device):
            batch = pad_batch(batch.to(device=self.device, dtype=self.dtype).contiguous(), full[0])
            return self.modules[full](batch)[: shape[0]]


def serialize_engine(model: BRN, shape: tuple[int, int, int, int], device: torch.device, precision: str, path: Path) -> Path:
    """A plain serialised TensorRT engine (for trtexec or the TensorRT runtime) at `path`."""
    problem = unavailable()
    if problem:
        raise EngineError(f"format='tensorrt': {problem}")
    if device.type != "cuda":
        raise EngineError("format='tensorrt' needs a CUDA GPU")
    import torch_tensorrt

    dtype = PRECISIONS[precision]
    root = EngineCache().root
    root.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), torch.cuda.device(device):
        program, example = export_program(model, shape, device, dtype)
        kwargs = _compile_kwargs(example, dtype, timing_cache_path(root, device))
        engine = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(program, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(engine))
    return path
