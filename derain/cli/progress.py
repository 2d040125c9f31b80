"""The video commands' progress bar on stderr: frames done, input and output fps, time left."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from derain.cli.console import err

if TYPE_CHECKING:
    from derain.api import VideoProgress


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
