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


class DiesOnceAnotherWrites(IdentityEngine):
    """The identity for a batch of two workers: the first to call it waits until the other has
    written part of its file (a temporary output shows in `outdir`), marks `marks`/saw-part and
    SIGKILLs its process; the other then holds its file (it is there to be stopped)."""

    backend = "dies-once-another-writes"

    def __init__(self, marks: str, outdir: str) -> None:
        super().__init__()
        self.marks, self.outdir = marks, outdir

    def written(self) -> bool:
        from pathlib import Path

        return any(Path(self.outdir).rglob(".*.part.*"))

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        import os
        import signal
        import time
        from pathlib import Path

        if self.calls == 0 and not os.path.exists(os.path.join(self.marks, "killer")):
            os.close(os.open(os.path.join(self.marks, "killer"), os.O_CREAT | os.O_EXCL))  # one killer of the two
            deadline = time.monotonic() + 300
            while not self.written() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.written():
                (Path(self.marks) / "saw-part").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.written():
            time.sleep(600)
        return super().run(batch)


class NoReplacement:
    """An engine factory for `derain.batch(engine=...)`: DiesOnceAnotherWrites in the first
    workers; a replacement (built once a worker has died) cannot build its engine."""

    def __init__(self, marks: str, outdir: str) -> None:
        self.marks, self.outdir = marks, outdir

    def __call__(self) -> DiesOnceAnotherWrites:
        import os

        from derain.models.errors import EngineError

        if os.path.exists(os.path.join(self.marks, "killer")):
            raise EngineError("stand-in: no engine for a replacement")
        return DiesOnceAnotherWrites(self.marks, self.outdir)
