"""The landmark query's candidate ranking: its fast paths must give what the plain computation gives."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from soundtrail.screening.landmarks.hashes import LandmarkConfig
from soundtrail.screening.landmarks.index import _neighbourhood_votes, _strongest_first, _top_alignments

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


def test_top_alignments_name_the_indexed_asset_numbers_of_their_cells() -> None:
    """Cells are counted over the hits' assets renumbered by rank; what comes out must be the index's own asset
    numbers (a candidate at 100,000 tracks is asset 99,999, not the last of the candidates)."""
    cfg = LandmarkConfig()
    rng = np.random.default_rng(3)
    chance = 3_000
    asset = [rng.choice([7, 5_000, 99_999], size=chance)]
    shift = [rng.uniform(-7.5, 7.5, size=chance)]
    delay = [rng.integers(-1_800, 1_800, size=chance)]
    # planted copies, far above chance cells' few hits: 30 hits of asset 99,999 (the highest number) 6 bins up
    # at a delay of 400 frames, 20 of asset 7 (the lowest) unshifted at -250 frames
    planted = ((99_999, 6.0, 400, 30), (7, 0.0, -250, 20))
    for number, bins, frames, hits in planted:
        asset.append(np.full(hits, number))
        shift.append(np.full(hits, bins))
        delay.append(np.full(hits, frames))
    ranked = _top_alignments(*(np.concatenate(part) for part in (asset, shift, delay)), cfg)
    assert ranked[0][0] == 99_999  # the stronger copy first
    for number, bins, frames, _ in planted:  # each copy's cell, or a neighbour of equal support, with its number
        assert any(owner == number and abs(pitch - bins) <= 1 and abs(delay_bin - frames // cfg.delay_bin) <= 1
                   for owner, pitch, delay_bin in ranked[:4])
    assert {owner for owner, _, _ in ranked} <= {7, 5_000, 99_999}
