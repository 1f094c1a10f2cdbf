"""Progress reporting from flows to whoever runs them (a rich bar in the CLI, nothing in tests).

Flow parameters must be serialisable, so the reporter is not passed in: the CLI installs one
for the duration of a command with :func:`reporting`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str, amount: int = 1) -> None: ...
    def finish(self, stage: str) -> None: ...


class SilentReporter:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


_current: Reporter = SilentReporter()


def reporter() -> Reporter:
    return _current


@contextlib.contextmanager
def reporting(new: Reporter) -> Iterator[Reporter]:
    global _current
    previous, _current = _current, new
    try:
        yield new
    finally:
        _current = previous
