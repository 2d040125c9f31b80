"""One benchmark run: the baseline and every engine row at every resolution, as a JSON-ready report."""

from __future__ import annotations

import datetime
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from derain.benchmarks.baseline import AuthorsBaseline
from derain.benchmarks.end_to_end import SUFFIX, end_to_end, transcode
from derain.benchmarks.harness import (
    FramePool,
    Timing,
    measure,
    peak_memory_mb,
    reset_peak_memory,
)
from derain.benchmarks.roofline import (
    FrameCost,
    Peaks,
    floors,
    frame_cost,
    measure_peaks,
)
from derain.benchmarks.system import device_info
from derain.engines import AutoEngine, EngineError, build_engine, choose_backend
from derain.engines.auto import TOLERANCE
from derain.engines.eager import EagerEngine
from derain.models.brn import BRN
from derain.models.metrics import psnr


@dataclass(frozen=True)
class Plan:
    resolutions: list[tuple[int, int]]  # (width, height)
    batches: list[int]
    engines: list[str]
    precisions: list[str]
    iterations: int
    warmup: int
    video: Path | None = None  # end-to-end mode: also run the pipeline on this file

    @property
    def pool_frames(self) -> int:
        # Two full batches of the largest size, so that consecutive calls never see the same pixels.
        return max(4, 2 * max(self.batches))


def resolve_engines(requested: list[str], device: torch.device) -> tuple[list[tuple[str, str]], list[str]]:
    """Each requested engine with the backend it runs on `device` (`auto` resolved on a GPU; on the
    CPU it measures per frame size as it runs, and its row names the pick), in order and
    duplicates kept: a row for every engine asked for. Notes say what auto chose."""
    engines: list[tuple[str, str]] = []
    notes: list[str] = []
    for name in requested:
        backend = name
        if name == "auto" and device.type == "cpu":
            notes.append("auto on the CPU: in fp32 it measures eager, onnx and openvino for each frame size and runs the fastest "
                         f"within {TOLERANCE:g} of eager fp32 (its rows' \"auto\" has the figures); below fp32 it runs eager")
        elif name == "auto":
            backend, passed = choose_backend(device)
            notes.append(f"auto picks {backend} here" + "".join(f"; passed over {p}" for p in passed))
        engines.append((name, backend))
    return engines, notes


def thread_policy() -> str:
    threads = torch.get_num_threads()
    return (f"every backend runs {threads} intra-op thread{'s' if threads != 1 else ''}: torch's count, which ONNX Runtime's "
            "intra_op_num_threads and OpenVINO's INFERENCE_NUM_THREADS are set to")


def _psnr_or_none(output: Tensor, reference: Tensor) -> float | None:
    """PSNR in dB of `output` against `reference`; None where they are identical (JSON has no Infinity)."""
    db = psnr(output.float(), reference)
    return db if math.isfinite(db) else None


def _result(
    engine: str, precision: str, batch: int, height: int, width: int, timing: Timing, cost: FrameCost,
    peaks: Peaks, baseline_fps: float, peak_mb: float | None, build_seconds: float, pool: FramePool, warmup: int,
) -> dict[str, object]:
    bound = floors(cost, precision, timing.fps, peaks)
    return {
        "engine": engine, "precision": precision, "batch": batch, "height": height, "width": width,
        "fps": timing.fps,
        "latency_ms_p50": timing.percentile_ms(50), "latency_ms_p99": timing.percentile_ms(99),
        "flops_per_frame": cost.flops, "min_bytes_per_frame": cost.min_bytes(precision),
        "speedup_vs_baseline": timing.fps / baseline_fps,
        "peak_memory_mb": peak_mb, "build_seconds": build_seconds,
        "compute_floor_share": bound.compute_floor_share, "memory_floor_share": bound.memory_floor_share,
        "compute_floor_ms": bound.compute_floor_ms, "memory_floor_ms": bound.memory_floor_ms,
        "iterations": len(timing.latencies_ms), "warmup": warmup, "timer": timing.timer,
        "input_checksum": pool.checksum, "input_frames": pool.count,
    }


class Unavailable(Exception):
    """build_engine refused this engine and precision here: no batch or resolution changes that."""


def _measure_engine(
    model: BRN, engine_name: str, precision: str, batch: int, device: torch.device, pool: FramePool,
    cost: FrameCost, peaks: Peaks, baseline_fps: float, plan: Plan, workdir: Path,
) -> dict[str, object]:
    """One engine row, measured on batches drawn from `pool`; in end-to-end mode, then on the video."""
    reset_peak_memory(device)
    try:
        engine = build_engine(model, engine_name, device, precision)
    except EngineError as err:
        raise Unavailable(str(err)) from None
    inputs = pool.batches(batch, engine.device, engine.dtype)
    shape = tuple(inputs[0].shape)
    # Only one input batch is the engine's to hold; the others are the harness's rotation.
    rotation_mb = sum(t.nbytes for t in inputs[1:]) / 2**20
    timing = measure(engine.run, inputs, plan.warmup, plan.iterations, batch, device)
    peak = peak_memory_mb(device)  # before the reference below adds an FP32 model's memory
    # Scored after timing, on the first frame of the first batch as the engine ran it, against
    # eager FP32 on that frame before any conversion to the engine's dtype.
    frame = pool.frames[:1].to(device, torch.float32)
    accuracy = _psnr_or_none(engine.run_unchecked(inputs[0])[:1], EagerEngine(model, device, "fp32").run(frame))
    del inputs, frame
    row = _result(engine.backend, engine.precision, batch, pool.frames.shape[2], pool.frames.shape[3], timing, cost, peaks,
                  baseline_fps, None if peak is None else peak - rotation_mb, engine.build_seconds, pool, plan.warmup)
    row["psnr_vs_fp32"] = accuracy
    if isinstance(engine, AutoEngine):
        row["auto"] = engine.choices[shape].to_dict()
    if plan.video is not None:
        output = workdir / f"{engine.backend}-{precision}-b{batch}{SUFFIX}"
        row["end_to_end"] = end_to_end(engine, plan.video, batch, output, timing.fps)
        output.unlink(missing_ok=True)
    return row


def _measure_baseline(model: BRN, device: torch.device, pool: FramePool, cost: FrameCost, peaks: Peaks, plan: Plan) -> dict[str, object]:
    """The authors' way, one host frame at a time from `pool`; its fps is the 1x of every row."""
    reset_peak_memory(device)
    baseline = AuthorsBaseline(model, device)
    timing = measure(baseline.run, pool.host_frames(), plan.warmup, plan.iterations, 1, device, host_synchronous=True)
    return _result("baseline", "fp32", 1, pool.frames.shape[2], pool.frames.shape[3], timing, cost, peaks, timing.fps,
                   peak_memory_mb(device), baseline.build_seconds, pool, plan.warmup)


def run_bench(
    model: BRN, device: torch.device, plan: Plan, weights: str,
    on_result: Callable[[dict[str, object], dict[str, object]], None] = lambda row, report: None,
) -> dict[str, object]:
    """Measure `plan` on `device`.

    Every finished row (baseline, engine, or an engine row that failed, with its "error") goes
    to `on_result` with the report so far, whose "complete" stays False until the last row.
    """
    engines, notes = resolve_engines(plan.engines, device)
    peaks = measure_peaks(device)
    rows: list[dict[str, object]] = []
    baselines: list[dict[str, object]] = []
    skipped: list[dict[str, object]] = []
    report: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_info(device),
        "peaks": peaks.to_dict(),
        "model": {"variant": model.variant, "stages": model.stages, "weights": weights,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "plan": {"resolutions": [f"{w}x{h}" for w, h in plan.resolutions], "batches": plan.batches,
                 "engines": plan.engines, "precisions": plan.precisions, "iterations": plan.iterations,
                 "warmup": plan.warmup, "input": None if plan.video is None else str(plan.video)},
        "thread_policy": thread_policy(),
        "notes": notes, "complete": False, "rows": rows, "baseline": baselines, "skipped": skipped, "transcode": None,
    }
    unavailable: set[tuple[str, str]] = set()

    def skip(engine: str, precision: str, reason: str, **where: int) -> None:
        skipped.append({"engine": engine, "precision": precision, **where, "reason": reason})

    def finish(row: dict[str, object]) -> None:
        rows.append(row)
        on_result(row, report)

    with tempfile.TemporaryDirectory(prefix="derain-bench-") as tmp:
        work = Path(tmp)
        if plan.video is not None:
            report["transcode"] = transcode(plan.video, work / f"transcode{SUFFIX}")
        for width, height in plan.resolutions:
            cost = frame_cost(model, height, width)
            pool = FramePool.generate(height, width, plan.pool_frames)
            base = _measure_baseline(model, device, pool, cost, peaks, plan)
            base["stages"] = model.stages
            baselines.append(base)
            on_result(base, report)
            for requested, backend in engines:
                for precision in plan.precisions:
                    if (requested, precision) in unavailable:
                        continue
                    for batch in plan.batches:
                        where = {"requested": requested, "requested_precision": precision, "stages": model.stages}
                        try:
                            row = _measure_engine(model, backend, precision, batch, device, pool, cost, peaks,
                                                  base["fps"], plan, work)  # type: ignore[arg-type]
                        except Unavailable as err:
                            unavailable.add((requested, precision))
                            skip(requested, precision, f"not available here: {err}")
                            break
                        except EngineError as err:
                            skip(requested, precision, str(err), batch=batch, height=height, width=width)
                            continue
                        except torch.cuda.OutOfMemoryError:
                            skip(requested, precision, "out of GPU memory", batch=batch, height=height, width=width)
                            continue
                        except Exception as err:  # noqa: BLE001 - a row that fails is reported, the table goes on
                            first = str(err).splitlines()[0] if str(err) else ""
                            finish({**where, "engine": backend, "precision": precision, "batch": batch, "height": height,
                                    "width": width, "error": f"{type(err).__name__}: {first}"[:500]})
                            continue
                        finish({**where, **row})
    report["complete"] = True
    return report
