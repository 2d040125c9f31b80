"""Progress on stderr: the video commands' bar (frames done, input and output fps, time left) and `derain batch`'s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from derain.cli.console import err

if TYPE_CHECKING:
    from derain.api import VideoProgress
    from derain.batching import BatchProgress


class _Rate(ProgressColumn):
    """Frames per second of one counter since the start."""

    def __init__(self, field: str, label: str) -> None:
        super().__init__()
        self.field, self.label = field, label

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        count = task.fields.get(self.field, 0)
        rate = count / elapsed if elapsed > 0 else 0.0
        return Text(f"{self.label} {rate:5.1f} fps", style="cyan")


class VideoBar:
    """A bar that `derain.video`'s `on_progress` feeds; shown only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        columns = (
            TextColumn("{task.description}", markup=False), BarColumn(),
            TextColumn("{task.completed}/{task.fields[total_text]} frames"),
            _Rate("decoded", "in"), _Rate("written", "out"), TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, console=err, transient=False, disable=not err.is_terminal)
        self.task = self.progress.add_task(label, total=None, total_text="?", decoded=0, written=0)

    @contextlib.contextmanager
    def shown(self, total: int) -> Iterator[None]:
        self.progress.update(self.task, total=total or None, total_text=str(total or "?"))
        with self.progress:
            yield

    def update(self, progress: VideoProgress) -> None:
        self.progress.update(self.task, completed=progress.written, decoded=progress.decoded, written=progress.written)


class BatchBar:
    """`derain batch`'s display: files finished of all, and a line per busy worker with its file
    and frames; fed by `derain.batch`'s `on_progress`, shown only on a terminal."""

    def __init__(self) -> None:
        columns = (TextColumn("{task.description}", markup=False), BarColumn(),
                   TextColumn("{task.completed}/{task.fields[total_text]} {task.fields[unit]}"), TimeRemainingColumn())
        self.progress = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
        self.files = self.progress.add_task("files", total=None, total_text="?", unit="files")
        self.workers: dict[str, TaskID] = {}

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        with self.progress:
            yield

    def update(self, progress: BatchProgress) -> None:
        failed = f" ({progress.failed} failed)" if progress.failed else ""
        self.progress.update(self.files, completed=progress.finished, total=progress.total, total_text=f"{progress.total}{failed}")
        for name in self.workers.keys() - progress.running.keys():
            self.progress.update(self.workers[name], description=f"  {name}: idle", completed=0, total=None, total_text="?")
        for name, (path, written, total) in progress.running.items():
            if name not in self.workers:
                self.workers[name] = self.progress.add_task("", total=None, total_text="?", unit="frames")
            self.progress.update(self.workers[name], description=f"  {name}: {Path(path).name}", completed=written,
                                 total=total or None, total_text=str(total or "?"))
