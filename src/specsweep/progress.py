"""Progress display for long work (engine builds, sweeps): rich bars with an ETA on stderr."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

console = Console(stderr=True, soft_wrap=True)  # long lines (commands to copy) stay whole


def _bar(remaining: ProgressColumn | None = None, **options) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), remaining or TimeRemainingColumn(), console=console,
                    transient=False, **options)


def pace_remaining(task: Task) -> float | None:
    """Seconds left at the pace of the whole invocation: its time so far over the requests it did.
    A sweep's pace is uneven (requests stream in, then a server starts for seconds with none), and
    rich's rate over the last 30 s made the ETA swing several-fold at every start; this one counts
    the starts as the rest of the sweep will have them."""
    done = task.completed - task.fields.get("resumed", 0)
    if done <= 0 or not task.elapsed or task.total is None:
        return None
    return task.elapsed / done * (task.total - task.completed)


class PaceRemainingColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        left = pace_remaining(task)
        return Text("-:--:--" if left is None else str(timedelta(seconds=round(left))), style="progress.remaining")


class SweepProgress:
    """The sweep's view: one bar over all planned requests, described by model · depth · rep."""

    def __init__(self, **options):
        self._progress = _bar(PaceRemainingColumn(), **options)
        self._task = None
        self._last = ""

    def start(self, total: int, completed: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("starting", total=total, completed=completed, resumed=completed)

    @property
    def seconds_left(self) -> float | None:
        return pace_remaining(next(t for t in self._progress.tasks if t.id == self._task))

    def describe(self, text: str) -> None:
        if text != self._last and not console.is_terminal:
            # No live bar in a log file or CI: one plain line whenever the work moves on.
            task = next(t for t in self._progress.tasks if t.id == self._task)
            left = self.seconds_left
            eta = f", ETA {left:.0f} s" if left is not None else ""
            console.print(f"{text} ({task.completed:.0f}/{task.total:.0f} requests{eta})", highlight=False)
        self._last = text
        self._progress.update(self._task, description=text)

    def advance(self) -> None:
        self._progress.advance(self._task)

    def stop(self) -> None:
        self._progress.stop()


class BuildProgress:
    """The engine build's view: compile steps from ninja's [n/N] lines."""

    def __init__(self, label: str):
        self._progress = _bar()
        self._label = label
        self._task = None

    def __enter__(self):
        self._progress.start()
        self._task = self._progress.add_task(self._label, total=1)
        return self

    def __call__(self, done: int, total: int, message: str) -> None:
        self._progress.update(self._task, completed=done, total=total, description=f"{self._label}: {message}")

    def __exit__(self, *exc) -> None:
        self._progress.stop()
