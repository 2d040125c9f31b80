"""Eager NCHW against channels-last (and OpenVINO, where installed) on the CPU, in process CPU time.

Wall time and CPU time of one call each, alternating, after a warm-up; CPU time (user + system,
all threads) is the steadier figure on a shared machine. Usage:

    python -m derain.benchmarks.cpu_layout --resolution 160x120,640x360 --repeats 2
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from collections.abc import Callable

import torch

from derain.engines import import_problem
from derain.models.brn import BRN, Derainer


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def contenders(model: BRN, y: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    nchw = Derainer(copy.deepcopy(model)).eval()
    last = Derainer(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)
    runs = {"eager NCHW": lambda: nchw(y), "eager channels-last": lambda: last(y.contiguous(memory_format=torch.channels_last))}
    if import_problem("openvino") is None:
        from derain.engines.openvino import OpenVinoEngine

        engine = OpenVinoEngine(model, torch.device("cpu"))
        runs["openvino"] = lambda: engine.run(y)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="160x120,640x360", help="WxH[,WxH...]")
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = BRN("brn", args.stages).eval()
    print(f"{torch.get_num_threads()} torch threads")
    with torch.inference_mode():
        for size in args.resolution.split(","):
            width, height = (int(v) for v in size.split("x"))
            y = torch.rand(1, 3, height, width)
            runs = contenders(model, y)
            reference = runs["eager NCHW"]()
            for name, run in runs.items():
                print(f"{size} {name}: max abs difference from NCHW {float((run() - reference).abs().max()):.2g}")
            for repeat in range(args.repeats):
                for name, run in runs.items():
                    wall, cpu = time.perf_counter(), cpu_seconds()
                    run()
                    print(f"{size} #{repeat} {name}: wall {time.perf_counter() - wall:.3f} s, cpu {cpu_seconds() - cpu:.3f} s", flush=True)


if __name__ == "__main__":
    main()
