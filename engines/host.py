"""Facts about this machine that decide how fast an engine runs: the CPU and the installed versions."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from pathlib import Path


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed, without importing it."""
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return None


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
