"""The landmark query's candidate ranking: its fast paths must give what the plain computation gives."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from soundtrail.tasks.landmarks import _neighbourhood_votes, _strongest_first

PITCH_SPAN, DELAY_SPAN = 19, 12


def _cells(rng: np.random.Generator, hits: int, assets: int) -> np.ndarray:
    """Cells laid out as the query lays them out: a free pitch row and delay column around every occupied one."""
    asset = rng.integers(assets, size=hits)
    pitch = rng.integers(1, PITCH_SPAN - 1, size=hits)
    delay = rng.integers(1, DELAY_SPAN - 1, size=hits)
    return (asset * PITCH_SPAN + pitch) * DELAY_SPAN + delay


def _plain_votes(cells: np.ndarray) -> dict[int, int]:
    """Hits in each occupied cell's 3 x 3 neighbourhood, by counting."""
    count = Counter(cells.tolist())
    return {cell: sum(count.get(cell + dp * DELAY_SPAN + dd, 0) for dp in (-1, 0, 1) for dd in (-1, 0, 1))
            for cell in count}


@pytest.mark.parametrize(("hits", "assets"), [(5_000, 3), (40, 10_000)], ids=["dense grid", "sparse grid"])
def test_neighbourhood_votes_count_each_cells_neighbours(hits: int, assets: int) -> None:
    cells = _cells(np.random.default_rng(hits), hits, assets)
    keys, support = _neighbourhood_votes(cells, DELAY_SPAN)
    assert keys.tolist() == sorted(_plain_votes(cells))
    assert support.tolist() == [_plain_votes(cells)[k] for k in keys.tolist()]


def test_strongest_first_reads_as_a_stable_sort_even_past_the_presorted_ones() -> None:
    support = np.random.default_rng(0).integers(0, 30, size=2_000)  # many ties
    expected = [i for i in np.argsort(-support, kind="stable").tolist() if support[i] >= 8]
    assert list(_strongest_first(support, 8, first=50)) == expected
    assert list(_strongest_first(support, 8, first=10_000)) == expected
