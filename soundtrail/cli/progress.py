"""A rich progress bar that flows report into (only on a terminal; silent in pipes and --json)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from soundtrail.cli.common import console
from soundtrail.flows.progress import SilentReporter, reporting


class RichReporter:
    """One bar per stage, on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def start(self, stage: str, total: int) -> None:
        self._tasks[stage] = self._progress.add_task(stage, total=total, note="")

    def advance(self, stage: str, amount: int = 1) -> None:
        if stage in self._tasks:
            self._progress.advance(self._tasks[stage], amount)

    def note(self, stage: str, text: str) -> None:
        if stage in self._tasks:
            self._progress.update(self._tasks[stage], note=text)

    def finish(self, stage: str) -> None:
        if stage in self._tasks:
            task = self._progress.tasks[self._tasks[stage]]
            self._progress.update(self._tasks[stage], completed=task.total)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show progress while the block runs, when stderr is a terminal and ``enabled``."""
    if not (enabled and console.is_terminal):
        with reporting(SilentReporter()):
            yield
        return
    columns = (TextColumn("[bold]{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=console, transient=False) as progress, reporting(RichReporter(progress)):
        yield
