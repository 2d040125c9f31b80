"""What a result was measured on: GPU, driver, library versions, CPU and clocks where readable."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from derain.engines.host import cpu_name, package_version

# nvidia-smi fields worth keeping next to a throughput figure: clocks decide it as much as the chip.
SMI_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem",
              "power.limit", "pstate", "temperature.gpu")


def cpu_clock_mhz() -> dict[str, float]:
    """Current and maximum clock of CPU 0 from cpufreq, where the kernel exposes it."""
    clocks = {}
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    for key, file in (("current_mhz", "scaling_cur_freq"), ("max_mhz", "cpuinfo_max_freq")):
        with contextlib.suppress(OSError, ValueError):
            clocks[key] = int((base / file).read_text()) / 1e3
    return clocks


def nvidia_smi(device: torch.device) -> dict[str, str]:
    """nvidia-smi's view of `device` (clocks in MHz, power in W), or {} when it is not there."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    props = torch.cuda.get_device_properties(device)
    # The UUID names the same GPU whatever CUDA_VISIBLE_DEVICES renumbered.
    uuid = getattr(props, "uuid", None)
    target = f"GPU-{uuid}" if uuid is not None else str(device.index or 0)
    cmd = [exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits", "-i", target]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(zip(SMI_FIELDS, (v.strip() for v in out.splitlines()[0].split(","))))


def device_info(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_tensorrt": package_version("torch-tensorrt", "torch_tensorrt"),
        "tensorrt": package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_cu12", "tensorrt_cu13"),
        "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
        "openvino": package_version("openvino"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews CPU figures; the load says how much there was.
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "cpu_clocks": cpu_clock_mhz(),
        "gpu": None,
        "driver": None,
        "gpu_clocks": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        smi = nvidia_smi(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            driver=smi.get("driver_version"),
            gpu_clocks={k: v for k, v in smi.items() if k not in ("name", "driver_version")} or None,
        )
    return info
