"""Stand-in engines for the pipeline tests: the identity, and a small real model on the CPU."""

from __future__ import annotations

import torch


class IdentityEngine:
    """A stand-in engine: returns its input, clamped as a real engine's output is."""

    backend = "identity"
    precision = "fp32"
    device = torch.device("cpu")
    dtype = torch.float32
    build_seconds = 0.0

    def __init__(self) -> None:
        self.calls = 0

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return batch.clamp(0, 1)


class ModelEngine(IdentityEngine):
    """A stand-in engine that runs a real (small) model on the CPU."""

    backend = "test-model"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @torch.inference_mode()
    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(batch)[0].clamp(0, 1)


class KillsItsWorker(IdentityEngine):
    """The identity, except that its first call in any process SIGKILLs that process, once for
    all processes: `marker` is created just before, so the retry on a fresh worker goes through."""

    backend = "kills-its-worker"

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        import os
        import signal

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run(batch)


class BuildKiller:
    """An engine factory for `derain.batch(engine=...)`: pickled to each worker, builds there."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self) -> KillsItsWorker:
        return KillsItsWorker(self.marker)
