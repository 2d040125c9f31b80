"""An engine backed by OpenVINO on the CPU, where it is installed (`derain[openvino]`)."""

from __future__ import annotations

import copy
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from derain.engines.base import Engine, EngineError, built_shape_for, import_problem, pad_batch
from derain.engines.cache import EngineCache, weights_hash
from derain.models.brn import BRN, Derainer

if TYPE_CHECKING:
    import openvino as ov

# OpenVINO's names for the precisions its CPU plugin computes in, and the capability
# (OPTIMIZATION_CAPABILITIES) that says the CPU has instructions for it. Without them OpenVINO
# runs f16 as f32 and emulates bf16 at a third of FP32's speed: both refused rather than run.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
CAPABILITIES = {"bf16": "BF16", "fp16": "FP16"}
# Compiled shapes kept at once: a folder of images of many sizes would otherwise keep every
# size's buffers; a dropped one comes back from OpenVINO's cache in well under a second.
MAX_SHAPES = 8


def convert(model: BRN, path: Path) -> None:
    """Write `model` as OpenVINO IR (`path` and its .bin beside it), batch, height and width free."""
    import openvino as ov

    module = Derainer(copy.deepcopy(model)).eval().float().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the recurrent loop: the stage count is fixed
        converted = ov.convert_model(module, example_input=torch.rand(1, 3, 64, 64), input=[ov.PartialShape([-1, 3, -1, -1])])
    ov.save_model(converted, str(path), compress_to_fp16=False)


class OpenVinoEngine(Engine):
    """OpenVINO's CPU plugin: the model converted once (cached as IR), compiled per frame shape
    with OpenVINO's own cache of compiled models under the engine cache, FP32 or, on CPUs with
    the instructions, OpenVINO's BF16/FP16 inference precision (inputs and outputs stay FP32)."""

    backend = "openvino"
    per_shape = True

    def __init__(self, model: BRN, device: torch.device, precision: str = "fp32", cache: EngineCache | None = None) -> None:
        problem = import_problem("openvino")
        if problem:
            raise EngineError(f"engine='openvino' needs OpenVINO, which is {problem}: pip install 'derain[openvino]'")
        if device.type != "cpu":
            raise EngineError(f"engine='openvino' runs on the CPU, not {device}; use device='cpu' or another engine")
        if precision not in HINTS:
            raise EngineError(f"precision={precision!r}: use one of {', '.join(HINTS)}")
        import openvino as ov

        start = time.perf_counter()
        self.core = ov.Core()
        if precision in CAPABILITIES:
            offered = list(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            if CAPABILITIES[precision] not in offered:
                raise EngineError(f"precision={precision!r} on the openvino engine needs a CPU with {CAPABILITIES[precision]} instructions; "
                                  f"OpenVINO finds only {', '.join(offered)} here: use precision='fp32'")
        self.device, self.precision, self.dtype = device, precision, torch.float32
        cache = cache or EngineCache()
        key = {"backend": "openvino", "weights": weights_hash(model), "variant": model.variant, "stages": model.stages,
               "openvino": ov.get_version(), "torch": torch.__version__}
        path = cache.lookup(key, "model.xml") or cache.store(key, "model.xml", lambda p: convert(model, p))
        try:
            self.model = self.core.read_model(str(path))
        except Exception as err:  # an entry that passed its hashes but OpenVINO refuses
            cache.remove(key)
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise EngineError(f"OpenVINO could not read the converted model ({first}); run again to rebuild it") from None
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            # One request at a time, each on every thread torch would use: the same cores as the other engines.
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "CACHE_DIR": str(cache.root / "openvino"),
        }
        self._requests: OrderedDict[tuple[int, ...], ov.InferRequest] = OrderedDict()
        self.build_seconds = time.perf_counter() - start

    def _run(self, batch: Tensor) -> Tensor:
        shape = tuple(batch.shape)
        array = batch.detach().to("cpu", torch.float32)
        full = built_shape_for(shape, self._requests) or self._prepare(shape)
        if full != shape:
            array = pad_batch(array, full[0])
        self._requests.move_to_end(full)
        request = self._requests[full]
        request.infer({0: array.contiguous().numpy()})
        # The request owns its output buffer and reuses it on the next call: the caller gets a copy.
        clean = torch.from_numpy(request.get_output_tensor(0).data.copy())
        return clean[: shape[0]].to(self.device)

    def _prepare(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Compile `shape` (a load from OpenVINO's cache when it was compiled before), counted as build time."""
        start = time.perf_counter()
        fixed = self.model.clone()
        fixed.reshape({0: list(shape)})
        compiled = self.core.compile_model(fixed, "CPU", self.config)
        if len(self._requests) >= MAX_SHAPES:
            self._requests.popitem(last=False)
        self._requests[shape] = compiled.create_infer_request()
        self.build_seconds += time.perf_counter() - start
        return shape
