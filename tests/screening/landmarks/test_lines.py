"""Fitting every candidate cell's line at once: each cell's line is found as if it were fitted alone."""

from __future__ import annotations

import numpy as np
import pytest

from soundtrail.screening.landmarks.hashes import LandmarkConfig
from soundtrail.screening.landmarks.lines import CellLines, cell_lines, long_stretches

CFG = LandmarkConfig()


def _cell_hits(rng: np.random.Generator, asset: int, tempo: float, offset: float, on_line: int,
               chance: int) -> dict[str, np.ndarray]:
    """Hits of one asset: ``on_line`` on ``query_t = asset_t / tempo + offset`` (within 2 frames), then ``chance``
    scattered over +-4 s of delay, as music sharing a key would add."""
    asset_t = rng.integers(200, 1_100, on_line + chance)
    query_t = np.empty(len(asset_t))
    query_t[:on_line] = asset_t[:on_line] / tempo + offset + rng.uniform(-2, 2, on_line)
    query_t[on_line:] = asset_t[on_line:] + offset + rng.uniform(-250, 250, chance)
    query_t = np.maximum(np.rint(query_t), 0).astype(np.int64)
    return {"asset": np.full(len(asset_t), asset), "shift": rng.uniform(-0.4, 0.4, len(asset_t)).astype(np.float32),
            "delay": query_t - asset_t, "query_t": query_t, "asset_t": asset_t,
            "on_line": np.arange(len(asset_t)) < on_line}


def _lines(cells: list[dict[str, np.ndarray]]) -> tuple[CellLines, list[tuple[int, float, int]], np.ndarray]:
    hits = {key: np.concatenate([c[key] for c in cells]) for key in cells[0]}
    alignments = [(int(c["asset"][0]), 0.0, int(np.floor(np.median(c["delay"][c["on_line"]]) / CFG.delay_bin)))
                  for c in cells]
    lines = cell_lines(hits["asset"], hits["shift"], hits["delay"], hits["query_t"], hits["asset_t"], alignments, CFG)
    return lines, alignments, hits["on_line"]


@pytest.mark.parametrize("seed", range(4))
def test_each_cell_finds_its_own_line_and_inliers(seed: int) -> None:
    """Three assets' cells at tempi 0.95, 1.0 and 1.05 under chance hits: each line comes back at its tempo and
    offset, and the on-line hits are its inliers, far more than chance hits."""
    rng = np.random.default_rng(seed)
    truth = [(0, 0.95, 300.0), (1, 1.0, -150.0), (2, 1.05, 40.0)]
    lines, _, on_line = _lines([_cell_hits(rng, a, tempo, offset, 60, 150) for a, tempo, offset in truth])
    for cell, (_, tempo, offset) in enumerate(truth):
        assert lines.slope[cell] == pytest.approx(1 / tempo, abs=CFG.tempo_step)  # one step of the slope grid
        own = lines.cell == cell
        at = lines.slope[cell] * 650 + lines.offset[cell]  # query time of the asset's middle frame
        assert at == pytest.approx(650 / tempo + offset, abs=2.0)
        caught = np.count_nonzero(lines.inlier[own] & on_line[lines.hit[own]])
        stray = np.count_nonzero(lines.inlier[own] & ~on_line[lines.hit[own]])
        assert caught >= 57 and stray <= 15


@pytest.mark.parametrize("seed", range(4))
def test_a_cell_fitted_among_others_gets_what_it_gets_alone(seed: int) -> None:
    """Batching must not leak between cells: grids laid end to end, per-cell medians and refits."""
    rng = np.random.default_rng(100 + seed)
    cells = [_cell_hits(rng, a, rng.uniform(0.93, 1.07), rng.uniform(-300, 300), int(rng.integers(8, 80)),
                        int(rng.integers(0, 300))) for a in range(5)]
    together, _, _ = _lines(cells)
    for i, cell in enumerate(cells):
        alone, _, _ = _lines([cell])
        own = together.cell == i
        assert together.slope[i] == pytest.approx(alone.slope[0], abs=1e-9)
        assert together.offset[i] == pytest.approx(alone.offset[0], abs=1e-6)
        start = int(np.flatnonzero(own)[0]) if own.any() else 0
        assert np.array_equal(together.hit[own] - start, alone.hit)
        assert np.array_equal(together.inlier[own], alone.inlier)


def test_stretches_split_at_gaps_and_keep_only_long_enough_runs() -> None:
    """One cell's on-line triplets: 6 s of them, a 3 s gap, then 2 s more. Only the first run is long enough."""
    frames_per_s = round(CFG.sample_rate / CFG.hop)
    t1 = np.concatenate([np.arange(0, 6 * frames_per_s, 10), np.arange(9 * frames_per_s, 11 * frames_per_s, 10)])
    t1 = t1.astype(np.int32)
    t3 = t1 + 20
    lines = CellLines(cell=np.zeros(len(t1), np.int64), starts=np.array([0, len(t1)]), hit=np.arange(len(t1)),
                      inlier=np.ones(len(t1), bool), slope=np.ones(1), offset=np.zeros(1))
    stretches = long_stretches(lines, np.arange(len(t1)), t1, t3, 5.0, CFG)
    assert stretches.cell.tolist() == [0]
    assert (stretches.start[0], stretches.end[0]) == (0, t1[t1 < 6 * frames_per_s].max() + 20)
    assert stretches.hits[0] == np.count_nonzero(t1 < 6 * frames_per_s)
    shorter = long_stretches(lines, np.arange(len(t1)), t1, t3, 1.5, CFG)
    assert shorter.hits.tolist() == [np.count_nonzero(t1 < 6 * frames_per_s), np.count_nonzero(t1 >= 9 * frames_per_s)]
