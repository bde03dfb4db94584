"""Progress display for long work (engine builds, sweeps): rich bars with an ETA on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True, soft_wrap=True)  # long lines (commands to copy) stay whole


def _bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    transient=False)


class SweepProgress:
    """The sweep's view: one bar over all planned requests, described by model · depth · rep."""

    def __init__(self):
        self._progress = _bar()
        self._task = None
        self._last = ""

    def start(self, total: int, completed: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("starting", total=total, completed=completed)

    def describe(self, text: str) -> None:
        if text != self._last and not console.is_terminal:
            # No live bar in a log file or CI: one plain line whenever the work moves on.
            task = next(t for t in self._progress.tasks if t.id == self._task)
            eta = f", ETA {task.time_remaining:.0f} s" if task.time_remaining is not None else ""
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
