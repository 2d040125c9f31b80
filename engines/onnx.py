"""ONNX export, and an engine backed by ONNX Runtime where it is installed."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from derain.engines.base import Engine, EngineError, import_problem
from derain.engines.cache import EngineCache, weights_hash
from derain.models.brn import BRN, Derainer
from derain.models.files import atomic_path

if TYPE_CHECKING:
    import onnxruntime as ort

OPSET = 18
INPUT_NAME = "rainy"
OUTPUT_NAME = "clean"
# The free dimensions of a dynamic graph: the example shape must lie inside them.
DYNAMIC_BATCH = (1, 256)
DYNAMIC_SIDE = (4, 16384)


def export_onnx(model: BRN, path: str | Path, dynamic: bool = True, shape: tuple[int, int, int, int] = (1, 3, 64, 64)) -> Path:
    """Write `model` as ONNX: input 'rainy' (N, 3, H, W) float32 in [0, 1], output 'clean'.

    With `dynamic`, N, H and W are free; otherwise the graph is fixed to `shape`.
    """
    problem = import_problem("onnxscript")
    if problem:
        raise EngineError(f"ONNX export needs onnxscript, which is {problem}: pip install 'derain[onnx]'")
    path = Path(path)
    batch, _, height, width = shape
    if dynamic and not (DYNAMIC_BATCH[0] <= batch <= DYNAMIC_BATCH[1] and all(DYNAMIC_SIDE[0] <= s <= DYNAMIC_SIDE[1] for s in (height, width))):
        raise EngineError(
            f"shape={'x'.join(map(str, shape))}: a `dynamic` export traces an example of batch {DYNAMIC_BATCH[0]}-{DYNAMIC_BATCH[1]} "
            f"and sides {DYNAMIC_SIDE[0]}-{DYNAMIC_SIDE[1]}; give one in range (the graph still takes any size in it)"
        )
    module = Derainer(copy.deepcopy(model)).eval().float().cpu()
    example = torch.rand(*shape)
    dynamic_shapes = None
    if dynamic:
        dims = {0: torch.export.Dim("batch", min=DYNAMIC_BATCH[0], max=DYNAMIC_BATCH[1]),
                2: torch.export.Dim("height", min=DYNAMIC_SIDE[0], max=DYNAMIC_SIDE[1]),
                3: torch.export.Dim("width", min=DYNAMIC_SIDE[0], max=DYNAMIC_SIDE[1])}
        dynamic_shapes = (dims,)
    # The exporter logs what it skips (torchvision ops); with verbose=False it prints nothing. Its
    # output is not redirected: sys.stdout is the whole process's, other threads print there too.
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        # Written beside `path` and renamed when done: an interrupted export leaves the old file.
        with atomic_path(path, ".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes, opset_version=OPSET, external_data=False, verbose=False,
            )
    finally:
        onnx_log.setLevel(level)
    return path


def session_options() -> ort.SessionOptions:
    """ONNX Runtime's settings for a BRN: the whole graph optimised (convolutions fused with their
    activations, layouts chosen once), operators one after another (each one is a convolution
    big enough to use every thread, and the stages depend on each other), and as many threads
    per operator as torch uses, so that the two engines are compared on the same cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxEngine(Engine):
    """ONNX Runtime on the CPU, or CUDA when onnxruntime-gpu is installed. FP32 only."""

    backend = "onnx"

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp32", cache: EngineCache | None = None) -> None:
        problem = import_problem("onnxruntime")
        if problem:
            raise EngineError(f"engine='onnx' needs ONNX Runtime, which is {problem}: pip install 'derain[onnx]'")
        if precision != "fp32":
            raise EngineError(f"engine='onnx' runs fp32 only, not {precision}: use precision='fp32'")
        import onnxruntime as ort

        start = time.perf_counter()
        self.device, self.precision, self.dtype = device, precision, torch.float32
        providers: list = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError("engine='onnx' on cuda needs onnxruntime-gpu; use engine='eager' or device='cpu'")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        cache = cache or EngineCache()
        key = {"backend": "onnx", "weights": weights_hash(model), "variant": model.variant, "stages": model.stages,
               "opset": OPSET, "torch": torch.__version__, "dynamic": True}
        path = cache.lookup(key, "model.onnx") or cache.store(key, "model.onnx", lambda p: export_onnx(model, p))
        try:
            self.session = ort.InferenceSession(str(path), session_options(), providers=providers)
        except Exception as err:  # a cache entry that passed its hash but ONNX Runtime refuses
            cache.remove(key)
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise EngineError(f"ONNX Runtime could not load the exported model ({first}); run again to rebuild it") from None
        self.build_seconds = time.perf_counter() - start

    def _run(self, batch: Tensor) -> Tensor:
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (clean,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(clean).to(self.device)
