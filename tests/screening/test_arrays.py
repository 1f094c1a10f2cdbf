"""The screening indexes' NumPy helpers agree with the plain (slow) NumPy they replace."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from soundtrail.screening.arrays import expand_ranges, find_runs, key_runs, sorted_unique

keys = st.lists(st.integers(-(2**62), 2**62), max_size=200)


@given(keys, st.integers(1, 50))
def test_sorted_unique_is_numpys_unique(values: list[int], repeats_modulus: int) -> None:
    array = np.array(values, dtype=np.int64) % repeats_modulus if values else np.zeros(0, np.int64)
    for case in (array, np.array(values, dtype=np.int64).reshape(-1)):
        got = sorted_unique(case)
        assert got.dtype == case.dtype
        np.testing.assert_array_equal(got, np.unique(case))


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 20)), max_size=30))
def test_expand_ranges_concatenates_aranges(ranges: list[tuple[int, int]]) -> None:
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    counts = np.array([c for _, c in ranges], dtype=np.int64)
    expected = np.concatenate([np.arange(s, s + c) for s, c in ranges] + [np.zeros(0, np.int64)])
    np.testing.assert_array_equal(expand_ranges(starts, counts), expected)


@given(st.lists(st.integers(-50, 50), max_size=200), st.lists(st.integers(-60, 60), max_size=50))
def test_find_runs_gives_each_needles_run_among_sorted_keys(keys: list[int], needles: list[int]) -> None:
    ordered = np.sort(np.array(keys, dtype=np.int64))
    wanted = np.array(needles, dtype=np.int64)
    distinct, run_starts = key_runs(ordered)
    np.testing.assert_array_equal(distinct, np.unique(ordered))
    first, counts = find_runs(distinct, run_starts, wanted)
    np.testing.assert_array_equal(counts, [np.count_nonzero(ordered == needle) for needle in needles])
    present = counts > 0
    np.testing.assert_array_equal(first[present], np.searchsorted(ordered, wanted[present]))
