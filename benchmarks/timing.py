"""Side-by-side timing shared by the benchmarks: contenders interleaved so a noisy neighbour slows all alike."""

from __future__ import annotations

import time
from collections.abc import Callable


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
