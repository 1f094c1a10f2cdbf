"""NumPy helpers the screening indexes share: expanding posting ranges, finding distinct keys and their runs."""

from __future__ import annotations

import numpy as np


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start and count, without a Python loop.

    One array is allocated and summed in place: a step of 1 within a range, a jump to the next range's start at
    its first position. Screening expands millions of postings a query, and each temporary of that size is fresh
    memory to zero.
    """
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nonempty = counts > 0
    starts, counts = starts[nonempty].astype(np.int64), counts[nonempty]
    ends = np.cumsum(counts)
    steps = np.ones(total, dtype=np.int64)
    steps[0] = starts[0]
    steps[ends[:-1]] = starts[1:] - (starts[:-1] + counts[:-1] - 1)
    return np.cumsum(steps, out=steps)


def key_runs(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each distinct key, where its run starts) of sorted keys; the starts have one more entry, ``len(ordered)``.
    Keys looked up among the distinct ones only (:func:`find_runs`) search a smaller table, and each key once."""
    run_starts = np.flatnonzero(np.diff(ordered, prepend=ordered[:1] - 1))
    return ordered[run_starts], np.append(run_starts, len(ordered))


def find_runs(distinct: np.ndarray, run_starts: np.ndarray, needles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first position, length) of each needle's run in the keys :func:`key_runs` described; length 0 where the
    needle is absent. Ready for :func:`expand_ranges`."""
    if not len(distinct):
        return np.zeros(len(needles), dtype=np.int64), np.zeros(len(needles), dtype=np.int64)
    at = np.minimum(np.searchsorted(distinct, needles), len(distinct) - 1)
    return run_starts[at], np.where(distinct[at] == needles, run_starts[at + 1] - run_starts[at], 0)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, found by sorting.

    NumPy 2.4's ``np.unique`` (without ``return_*``) collects distinct values in a hash table, which is slow once
    they are many (the anchor keys of a landmark index) and still slower than a sort for the few thousand values
    of one query's candidate cells (measured: ``benchmarks/RESULTS.md``).
    """
    ordered = np.sort(values)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered
