"""Side-by-side timing shared by the benchmarks: contenders interleaved so a noisy neighbour slows all alike."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock


def best_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each contender over ``repeats`` interleaved rounds, after one warm-up call each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


@contextlib.contextmanager
def seconds_inside(owner: type, name: str) -> Iterator[list[float]]:
    """Count the wall seconds spent in the method ``owner.name`` while the block runs, into the yielded
    one-item list (a list, so the block can read and reset it between runs)."""
    spent = [0.0]
    real = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    with mock.patch.object(owner, name, timed):
        yield spent
