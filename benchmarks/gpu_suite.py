"""Issue 8 on a GPU: every engine against CPU FP32, the paper's protocol in reduced precision,
and the video pipeline end to end against a plain PyAV transcode, with NVDEC/NVENC probed.

Speed per engine, size and batch comes from `derain bench`; this script covers what the bench
does not. Each part writes a markdown table and a JSON file into --out.

On a device machine (the device tool's README), prepare here, in the repository root:
    echo /.gpu/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
    mkdir -p .gpu/Rain100L/input .gpu/Rain100L/target && cp ../shared/weights/official/BRN_R100L.pth .gpu/
    for i in $(seq 1 30); do for d in input target; do cp ../shared/data/Rain100L/$d/$i.png .gpu/Rain100L/$d/; done; done
    cp -r out/clean-photos .gpu/clean-photos   # the 62 training photos, 17 MB (models/weights/MODEL_CARD.md makes them)
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av platformdirs
(30 of the 100 pairs: the whole set and the PyAV wheel together pass the device tool's 64 MiB
carry limit), then in one call, carrying .gpu and .whl:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-deps --no-build-isolation -e .
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --weights .gpu/BRN_R100L.pth --data .gpu/Rain100L --out $OUT
and the speed table (issue 5) in the next, the same installs first; every compile row builds
its shape once (tens of seconds), so split the resolutions over calls if it runs long:
    python3 -m derain.stream.cli bench --device cuda --resolution 1280x720,1920x1080 --batch 1,2,4,8 \
        --engine eager,compile --precision fp16,bf16,fp32 --json $OUT/bench.json

The built-in weights (issue 7) train far faster there than on a CPU; in one call carrying
only .whl and .gpu/clean-photos (with Rain100L as well the carry passes 64 MiB), same installs
first; `timeout` sends SIGTERM, after which the run saves and can resume:
    timeout 570 python3 -m derain.stream.cli train --data .gpu/clean-photos --synthetic-rain --out /tmp/train \
        --init builtin --l1 1.0 --heavy-fraction 0.1 --procedural 0.3 --epochs 40 --steps-per-epoch 250 --device cuda
    cp /tmp/train/last.safetensors /tmp/train/log.jsonl $OUT/
Pick --epochs x --steps-per-epoch from the steps/s the first epoch logs, so that the learning
rate schedule ends inside the call (the run folder holds a checkpoint per epoch: only 8 files
come back from $OUT). Score the result here, on all 100 pairs, with `derain eval`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import torch

from derain.benchmarks.end_to_end import make_rainy_clip, transcode
from derain.engines import Engine, EngineError, build_engine
from derain.models.brn import BRN
from derain.models.data import find_pairs, read_image
from derain.models.evaluate import evaluate
from derain.models.hub import load_model
from derain.models.metrics import psnr
from derain.stream.pipeline import VideoJob, run_video
from derain.stream.stats import Stats

VARIANTS = [
    ("eager", "fp32"), ("eager", "fp16"), ("eager", "bf16"),
    ("compile", "fp16"), ("compile", "bf16"), ("tensorrt", "fp16"), ("onnx", "fp32"),
]


def try_build(model: BRN, backend: str, precision: str, notes: list[str]) -> Engine | None:
    try:
        return build_engine(model, backend, "cuda", precision)
    except EngineError as err:
        notes.append(f"{backend} {precision}: not available here: {err}")
        return None


def correctness(model: BRN, data: Path, count: int, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """Max abs error and PSNR of each engine against CPU FP32 on real frames; then the
    paper's protocol on the whole set for the engines that ran."""
    pairs = find_pairs(data)
    frames = [torch.from_numpy(read_image(p)).permute(2, 0, 1)[None] for p, _ in pairs[:count]]
    cpu = build_engine(model, "eager", "cpu", "fp32")
    references = [cpu.run(f) for f in frames]
    rows, protocol = [], []
    for backend, precision in VARIANTS:
        engine = try_build(model, backend, precision, notes)
        if engine is None:
            continue
        errors, psnrs = [], []
        for frame, reference in zip(frames, references):
            out = engine.run(frame.cuda()).float().cpu()
            errors.append(float((out - reference).abs().max()))
            psnrs.append(psnr(out, reference))
        rows.append({"engine": backend, "precision": precision, "frames": len(frames),
                     "max_abs_error": max(errors), "psnr_vs_cpu_fp32_min": min(psnrs)})
        print(rows[-1], flush=True)
        start = time.perf_counter()
        report = evaluate(engine.run, pairs, str(data), "")
        protocol.append({"engine": backend, "precision": precision, "psnr": report.mean("psnr"),
                         "ssim": report.mean("ssim"), "count": report.count, "seconds": time.perf_counter() - start})
        print(protocol[-1], flush=True)
    return rows, protocol


def probe_codec(name: str, mode: str, clip: Path) -> str:
    """Whether a hardware codec of PyAV's wheel works here, and what it printed if not."""
    try:
        if mode == "r":
            with av.open(str(clip)) as container:
                ctx = av.CodecContext.create(name, "r")
                decoded = 0
                for packet in container.demux(video=0):
                    decoded += len(ctx.decode(packet))
                    if decoded >= 10:
                        return f"works ({decoded} frames decoded)"
                return f"decoded only {decoded} frames"
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 1920, 1080, "yuv420p", Fraction(1, 30)
        ctx.open()
        frame = av.VideoFrame(1920, 1080, "yuv420p")
        packets = sum(len(ctx.encode(frame)) for _ in range(10)) + len(ctx.encode(None))
        return f"works ({packets} packets encoded)"
    except Exception as err:  # the probe reports any failure, it must not stop the suite
        return f"fails: {type(err).__name__}: {err}"


def end_to_end(model: BRN, frames: int, notes: list[str]) -> list[dict]:
    clip = Path("/tmp/clip1080.mp4")
    start = time.perf_counter()
    make_rainy_clip(clip, frames, 1920, 1080)
    print(f"made {clip} in {time.perf_counter() - start:.0f} s", flush=True)
    rows: list[dict] = []
    plain = transcode(clip, Path("/tmp/plain.mp4"))
    rows.append({"what": "plain PyAV transcode", **plain})
    for backend, precision, batch in (("eager", "fp16", 1), ("eager", "fp16", 4), ("compile", "fp16", 1), ("compile", "fp16", 4), ("tensorrt", "fp16", 4)):
        engine = try_build(model, backend, precision, notes)
        if engine is None:
            continue
        output = Path(f"/tmp/derained-{backend}-{batch}.mp4")
        warm = VideoJob(clip, output, batch=batch, duration=0.5, overwrite=True)
        run_video(warm, engine, Stats())  # compiles the shapes; not timed
        torch.cuda.synchronize()
        memory_before = torch.cuda.memory_allocated()
        # Every blocking host<->device call on the main thread (where conversion and the engine
        # run) becomes a warning: the pipeline should have none but its own event waits.
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = run_video(VideoJob(clip, output, batch=batch, overwrite=True), engine, Stats())
        torch.cuda.set_sync_debug_mode(0)
        syncs = sorted({str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)})
        report = summary.to_dict()
        rows.append({"what": f"derain video, {backend} {precision}, batch {batch}", "frames": summary.frames,
                     "seconds": summary.seconds, "fps": summary.fps, "stages": report["stages"],
                     "host_syncs": syncs, "memory_growth_mb": (torch.cuda.memory_allocated() - memory_before) / 2**20})
        print(rows[-1], flush=True)
    for name, mode in (("h264_cuvid", "r"), ("h264_nvenc", "w"), ("hevc_nvenc", "w")):
        notes.append(f"{name}: {probe_codec(name, mode, clip)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", type=Path, required=True, help="a paired test set, e.g. Rain100L")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="correctness,video", help="comma list of correctness, video")
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated 1080p clip")
    parser.add_argument("--count", type=int, default=8, help="frames for the per-engine error check")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no CUDA GPU here; run it on a device machine")
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.weights)
    result: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "pyav": av.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    notes: list[str] = []
    parts: dict[str, Callable[[], object]] = {
        "correctness": lambda: correctness(model, args.data, args.count, notes),
        "video": lambda: end_to_end(model, args.frames, notes),
    }
    for part in args.parts.split(","):
        try:
            result[part] = parts[part]()
        except Exception:  # one part's failure is a finding; the others still run
            result[part] = {"error": traceback.format_exc()}
            print(traceback.format_exc(), flush=True)
    result["notes"] = notes
    (args.out / "gpu_suite.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
