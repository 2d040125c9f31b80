"""Issue 8 on a GPU: every engine against CPU FP32, the paper's protocol in reduced precision,
and the video pipeline end to end against a plain PyAV transcode, with NVDEC/NVENC probed.

Speed per engine, size and batch comes from `derain bench`; this script covers what the bench
does not. It writes --out/gpu_suite.json, rewritten after every row, so a call cut short still
returns what it measured; each pipeline row says whether the run completed, its error and
whether it wrote every frame of the clip, and an identity engine checks that the CUDA pipeline
gives back the input's planes bit for bit (a stream race breaks that first).

A device machine (the device tool's README) has Python 3.12, PyTorch, Triton, ONNX and OpenCV
but no PyAV or platformdirs: those travel as wheels. A call sends the working tree (1.3 MiB)
and the paths its `carry` names, 64 MiB in all, so each call carries only what it uses.
Prepare here, in the repository root (`python` being the project's venv):

    x=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$x")"
    for p in /.gpu/ /.whl/; do grep -qxF $p "$x" 2>/dev/null || echo $p >> "$x"; done
    mkdir -p .gpu/Rain100L/input .gpu/Rain100L/target && cp ../shared/weights/official/BRN_R100L.pth .gpu/
    for i in $(seq 1 30); do for d in input target; do cp ../shared/data/Rain100L/$d/$i.png .gpu/Rain100L/$d/; done; done
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==19.0.2 platformdirs==4.14.9
    python benchmarks/gpu_suite.py --carry     # each call's size against the limit

(measured, bytes as `du -b` counts them: the wheels 33.5 MiB, 30 of the 100 Rain100L pairs
15.0 MiB, the weights 1.6 MiB; the suite's call 51.3 MiB in all, the bench's 34.7).
Every call starts with the same installs:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site && python3 -m pip install -q --no-deps --no-build-isolation -e . || exit
then the suite, carrying .whl, .gpu/BRN_R100L.pth and .gpu/Rain100L:
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --weights .gpu/BRN_R100L.pth --data .gpu/Rain100L --out $OUT
and the speed table (issue 5) in the next call, carrying .whl alone; every compile row builds
its shape once (tens of seconds), so split the resolutions over calls if it runs long:
    python3 -m derain bench --device cuda --resolution 1280x720,1920x1080 --batch 1,2,4,8 \
        --engine eager,compile --precision fp16,bf16,fp32 --json $OUT/bench.json

The built-in weights (issue 7) train far faster there than on a CPU. Copy the 62 training
photos (17 MB; `python -m derain.models.photos out/clean-photos` makes them, see
models/weights/MODEL_CARD.md) with `cp -r out/clean-photos .gpu/clean-photos`, then in one call
carrying .whl and .gpu/clean-photos (about 51 MiB), after the installs (`timeout` sends
SIGTERM, after which the run saves and can resume):
    timeout 570 python3 -m derain train --data .gpu/clean-photos --synthetic-rain --out /tmp/train \
        --init builtin --l1 1.0 --heavy-fraction 0.1 --procedural 0.3 --epochs 40 --steps-per-epoch 250 --device cuda
    cp /tmp/train/last.safetensors /tmp/train/log.jsonl $OUT/
Pick --epochs x --steps-per-epoch from the steps/s the first epoch logs, so that the learning
rate schedule ends inside the call (the run folder holds a checkpoint per epoch: only 8 files
come back from $OUT). Score the result here, on all 100 pairs, with `derain eval`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import subprocess
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from derain.benchmarks.end_to_end import make_rainy_clip, transcode
from derain.benchmarks.pipeline_overhead import IdentityEngine
from derain.engines import Engine, EngineError, build_engine
from derain.models.brn import BRN
from derain.models.data import find_pairs, read_image
from derain.models.evaluate import evaluate
from derain.models.hub import load_model
from derain.models.metrics import psnr
from derain.stream.encode import EncodeOptions
from derain.stream.pipeline import VideoJob, run_video
from derain.stream.pixels import frame_planes, layout_of
from derain.stream.stats import Stats

VARIANTS = [
    ("eager", "fp32"), ("eager", "fp16"), ("eager", "bf16"),
    ("compile", "fp16"), ("compile", "bf16"), ("tensorrt", "fp16"), ("onnx", "fp32"),
]
# x264's CRF 0 is lossless for 8-bit video (checked against decoded planes), and ultrafast
# keeps the identity rows' encoding at a fraction of FFV1's time.
LOSSLESS = EncodeOptions(crf=0, preset="ultrafast")

ROOT = Path(__file__).resolve().parents[1]
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on what one call sends
# What each call in the docstring names in `carry`; the working tree travels with every call.
CARRY: dict[str, tuple[str, ...]] = {
    "suite": (".whl", ".gpu/BRN_R100L.pth", ".gpu/Rain100L"),
    "bench": (".whl",),
    "train": (".whl", ".gpu/clean-photos"),
}


class Report:
    """The suite's JSON document, rewritten whole after every row through a temporary file and
    os.replace: a call cut short (its timeout, a crash) leaves every row measured so far, in a
    file that always parses."""

    def __init__(self, path: Path, header: dict[str, object]) -> None:
        self.path = path
        self.data: dict[str, object] = dict(header)
        self.save()

    def add(self, section: str, item: object) -> None:
        self.data.setdefault(section, []).append(item)
        print(json.dumps(item, default=str), flush=True)
        self.save()

    def save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(temporary, self.path)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """FP32 convolutions and matrix products in full FP32 for the block, then as they were.

    The GPU colour conversion's chroma average is a conv2d, which cuDNN runs in TF32 by default
    (only an FP32 engine's build turns that off): in TF32 the YUV round trip is no longer
    exact. The legacy flags are the ones the engines set; mixing in the newer fp32_precision
    API makes PyTorch refuse to read them.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def try_build(model: BRN, backend: str, precision: str, report: Report) -> Engine | None:
    try:
        return build_engine(model, backend, "cuda", precision)
    except EngineError as err:
        report.add("notes", f"{backend} {precision}: not available here: {err}")
        return None


def correctness(model: BRN, data: Path, count: int, report: Report) -> None:
    """Max abs error and PSNR of each engine against CPU FP32 on real frames; then the
    paper's protocol on the whole set for the engines that ran."""
    pairs = find_pairs(data)
    frames = [torch.from_numpy(read_image(p)).permute(2, 0, 1)[None] for p, _ in pairs[:count]]
    cpu = build_engine(model, "eager", "cpu", "fp32")
    references = [cpu.run(f) for f in frames]
    for backend, precision in VARIANTS:
        engine = try_build(model, backend, precision, report)
        if engine is None:
            continue
        errors, psnrs = [], []
        for frame, reference in zip(frames, references):
            out = engine.run(frame.cuda()).float().cpu()
            errors.append(float((out - reference).abs().max()))
            psnrs.append(psnr(out, reference))
        report.add("correctness", {"engine": backend, "precision": precision, "frames": len(frames),
                                   "max_abs_error": max(errors), "psnr_vs_cpu_fp32_min": min(psnrs)})
        start = time.perf_counter()
        scores = evaluate(engine.run, pairs, str(data), "")
        report.add("protocol", {"engine": backend, "precision": precision, "psnr": scores.mean("psnr"),
                                "ssim": scores.mean("ssim"), "count": scores.count, "seconds": time.perf_counter() - start})


def probe_decoder(name: str, clip: Path, wanted: int = 10) -> str:
    """Whether decoder `name` of PyAV's wheel decodes `clip`'s video here, and why not if not.

    MP4 holds H.264 as length-prefixed NAL units with the parameter sets in the stream's
    extradata (AVCC): a context made apart from the stream must be given that extradata, or
    it rejects every packet as invalid data whatever the hardware.
    """
    try:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            ctx = av.CodecContext.create(name, "r")
            ctx.extradata = stream.codec_context.extradata
            decoded = 0
            for packet in container.demux(stream):
                decoded += len(ctx.decode(packet))
                if decoded >= wanted:
                    return f"works ({decoded} frames decoded)"
            return f"decoded only {decoded} frames"
    except Exception as err:  # the probe reports any failure, it must not stop the suite
        return f"fails: {type(err).__name__}: {err}"


def probe_encoder(name: str, frames: int = 10) -> str:
    """Whether encoder `name` of PyAV's wheel encodes 1080p here, and why not if not."""
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 1920, 1080, "yuv420p", Fraction(1, 30)
        ctx.open()
        frame = av.VideoFrame(1920, 1080, "yuv420p")
        packets = sum(len(ctx.encode(frame)) for _ in range(frames)) + len(ctx.encode(None))
        return f"works ({packets} packets encoded)"
    except Exception as err:  # as in probe_decoder
        return f"fails: {type(err).__name__}: {err}"


def frame_count(path: Path) -> int:
    """Video frames in `path`, counted as its packets (one a frame in H.264, FFV1 and MJPEG)."""
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


@contextlib.contextmanager
def host_syncs(cuda: bool) -> Iterator[list[str]]:
    """The blocking host<->device calls made on this thread (where conversion and the engine
    run) during the block: the pipeline should make none but its own event waits."""
    found: list[str] = []
    if not cuda:
        yield found
        return
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
    finally:
        torch.cuda.set_sync_debug_mode(0)
    found.extend(sorted({str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)}))


def pipeline_row(what: str, job: VideoJob, engine: Engine, expected: int) -> dict[str, object]:
    """One `run_video` job, with what tells a full run from one cut short: an error mid-file
    is returned in the summary, not raised, and then only the frame count shows it."""
    cuda = engine.device.type == "cuda"
    memory_before = torch.cuda.memory_allocated() if cuda else 0
    with host_syncs(cuda) as syncs:
        summary = run_video(job, engine, Stats())
    row: dict[str, object] = {
        "what": what, "ok": summary.complete and summary.frames == expected,
        "complete": summary.complete, "error": summary.error, "interrupted": summary.interrupted,
        "frames": summary.frames, "expected_frames": expected, "frame_count_ok": summary.frames == expected,
        "seconds": summary.seconds, "fps": summary.fps, "stages": summary.to_dict()["stages"],
    }
    if cuda:
        row["host_syncs"] = syncs
        row["memory_growth_mb"] = (torch.cuda.memory_allocated() - memory_before) / 2**20
    return row


def decoded_planes(path: Path) -> Iterator[list[np.ndarray]]:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame_planes(frame, layout_of(frame.format.name))


def compare_planes(reference: Path, candidate: Path) -> dict[str, object]:
    """Frame by frame, whether `candidate` decodes to the very planes `reference` does."""
    frames, mismatched, largest = 0, [], 0
    for a, b in itertools.zip_longest(decoded_planes(reference), decoded_planes(candidate)):
        frames += 1
        same = a is not None and b is not None and all(np.array_equal(x, y) for x, y in zip(a, b))
        if same:
            continue
        mismatched.append(frames - 1)
        if a is not None and b is not None:
            diffs = [np.abs(x.astype(np.int64) - y).max() for x, y in zip(a, b) if x.shape == y.shape]
            largest = max(largest, int(max(diffs, default=0)))
    return {"equal": not mismatched, "frames_compared": frames, "mismatched_frames": len(mismatched),
            "first_mismatches": mismatched[:10], "max_code_difference": largest}


def identity_row(clip: Path, output: Path, engine: Engine, batch: int) -> dict[str, object]:
    """The whole pipeline with an engine that returns its input, encoded losslessly: the
    colour round trip is exact, so every decoded plane must equal the input's. A race
    between the copy and compute streams (a slot reused too early) shows here first."""
    job = VideoJob(clip, output, batch=batch, encode=LOSSLESS, overwrite=True)
    row = pipeline_row(f"identity pipeline, {engine.device}, batch {batch}", job, engine, frame_count(clip))
    # A job that fails before its first frame leaves no output file behind.
    planes = compare_planes(clip, output) if output.is_file() else {"equal": False, "output": "none written"}
    row["planes"] = planes
    row["ok"] = bool(row["ok"] and planes["equal"])
    return row


def end_to_end(model: BRN, frames: int, report: Report) -> None:
    clip = Path("/tmp/clip1080.mp4")
    start = time.perf_counter()
    make_rainy_clip(clip, frames, 1920, 1080)
    print(f"made {clip} in {time.perf_counter() - start:.0f} s", flush=True)
    expected = frame_count(clip)
    # The software decoder runs the same probe as a control: if it fails too, the probe is wrong, not NVDEC.
    for name in ("h264_cuvid", "h264"):
        report.add("notes", f"{name}: {probe_decoder(name, clip)}")
    for name in ("h264_nvenc", "hevc_nvenc"):
        report.add("notes", f"{name}: {probe_encoder(name)}")
    report.add("video", {"what": "plain PyAV transcode", "expected_frames": expected, **transcode(clip, Path("/tmp/plain.mp4"))})
    for batch in (1, 4):
        report.add("video", identity_row(clip, Path(f"/tmp/identity-{batch}.mkv"), IdentityEngine(torch.device("cuda")), batch))
    for backend, precision, batch in (("eager", "fp16", 1), ("eager", "fp16", 4), ("compile", "fp16", 1), ("compile", "fp16", 4), ("tensorrt", "fp16", 4)):
        engine = try_build(model, backend, precision, report)
        if engine is None:
            continue
        output = Path(f"/tmp/derained-{backend}-{batch}.mp4")
        warm = run_video(VideoJob(clip, output, batch=batch, duration=0.5, overwrite=True), engine, Stats())  # builds the shapes
        if warm.error:
            report.add("notes", f"{backend} {precision} batch {batch}: the warm-up run failed: {warm.error}")
        torch.cuda.synchronize()
        job = VideoJob(clip, output, batch=batch, overwrite=True)
        report.add("video", pipeline_row(f"derain video, {backend} {precision}, batch {batch}", job, engine, expected))


def run_parts(report: Report, parts: dict[str, Callable[[], None]]) -> None:
    """Each part in turn; one part's failure is a finding, recorded, and the others still run.
    A whole part runs under exact_fp32, so that a compiled engine's warm-up and timed runs see
    the same flags (a change of the cuBLAS one can make torch.compile build again mid-run)."""
    for name, part in parts.items():
        try:
            with exact_fp32():
                part()
        except Exception:
            report.add("errors", {"part": name, "traceback": traceback.format_exc()})


def working_tree(root: Path) -> list[Path]:
    """Tracked files and the untracked ones git does not ignore: what every call sends."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.decode()
    return [root / name for name in listed.split("\0") if name and (root / name).is_file()]


def carried(root: Path, call: str) -> list[Path]:
    """Every file that the docstring's `call` sends; a carry path not prepared yet is an error
    (a size without it would look like one that fits)."""
    files = working_tree(root)
    for name in CARRY[call]:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: not prepared (gpu_suite's docstring says how)")
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


def size_of(files: list[Path]) -> int:
    """Bytes, as the files' own sizes (`du -b`): what is copied, not the disk blocks."""
    return sum(f.stat().st_size for f in files)


def carry_report(root: Path) -> bool:
    """Print each call's size against the limit; True when every call is prepared and fits."""
    fits = True
    for call in CARRY:
        try:
            size = size_of(carried(root, call))
        except FileNotFoundError as err:
            print(f"{call}: {err}")
            fits = False
            continue
        fits = fits and size <= CARRY_LIMIT
        print(f"{call}: {size / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f} (carry {', '.join(CARRY[call])})")
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carry", action="store_true", help="print what each device call in the docstring sends, and exit")
    parser.add_argument("--weights")
    parser.add_argument("--data", type=Path, help="a paired test set, e.g. Rain100L")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parts", default="correctness,video", help="comma list of correctness, video")
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated 1080p clip")
    parser.add_argument("--count", type=int, default=8, help="frames for the per-engine error check")
    args = parser.parse_args(argv)
    if args.carry:
        return 0 if carry_report(ROOT) else 1
    if not (args.weights and args.data and args.out):
        parser.error("--weights, --data and --out are required")
    names = args.parts.split(",")
    if unknown := set(names) - {"correctness", "video"}:
        parser.error(f"--parts: no part named {', '.join(sorted(unknown))}")
    if not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no CUDA GPU here; run it on a device machine")
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.weights)
    report = Report(args.out / "gpu_suite.json", {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "pyav": av.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    })
    parts: dict[str, Callable[[], None]] = {
        "correctness": lambda: correctness(model, args.data, args.count, report),
        "video": lambda: end_to_end(model, args.frames, report),
    }
    run_parts(report, {name: parts[name] for name in names})
    print(f"wrote {report.path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
