"""Seconds a `derain train` step takes on this machine, FP32 against mixed precision.

`derain train`'s own step (`train_step`: Adam, the paper's loss plus L1, gradient scaling for
FP16 on CUDA) on BRN (T = 4) and a batch of random patches: the model's share of a step,
without the batch synthesis. Each variant is warmed up, then timed over several steps.

    python benchmarks/train_step.py [--patch 64] [--batch 8] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from derain.models.brn import BRN
from derain.models.train import amp_dtype, train_step


def time_steps(device: torch.device, amp: str, channels_last: bool, patch: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = BRN("brn", 4).to(device, memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    rainy, clean = torch.rand(2, batch, 3, patch, patch, device=device)
    data = (rainy.contiguous(memory_format=layout), clean, rainy - clean)
    dtype = amp_dtype(amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step() -> None:
        train_step(model, optimizer, scaler, data, dtype, 1.0)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"BRN T=4, patch {args.patch}, batch {args.batch}, device {device}, {torch.get_num_threads()} torch threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    base = None
    for amp, channels_last in (("off", False), ("off", True), ("on", False), ("on", True)):
        seconds = time_steps(device, amp, channels_last, args.patch, args.batch, args.steps)
        base = base or seconds
        name = f"amp {amp}" + (", channels-last" if channels_last else "")
        print(f"{name:28} {seconds:7.3f} s/step  x{base / seconds:.2f}")


if __name__ == "__main__":
    main()
