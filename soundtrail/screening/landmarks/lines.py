"""Step 3 of a landmark query, for every candidate cell at once: the line each cell's hits lie on, and its inliers.

A query examines ~80 (asset, pitch shift, delay) cells of ~20-3,000 hits each. Fitting them one by one spends
most of a query's time in NumPy's per-call overhead on small arrays. Here hits are laid out grouped by cell and each
step runs once over all of them: per-cell medians by one sort, the Hough votes of all cells in one ``bincount``
over their grids laid end to end, the least-squares refit from per-cell sums.

Each cell's result is what fitting it alone gives (tested): the same hits, Hough grid, medians and tie-breaking;
only the least-squares refit sums in another order than ``np.polyfit`` would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundtrail.screening.arrays import expand_ranges, sorted_unique
from soundtrail.screening.landmarks.hashes import LandmarkConfig

_PITCH_REACH = 1.5  # bins: a cell's line is sought among hits within this pitch shift of the cell's


@dataclass(frozen=True)
class CellLines:
    """Hits grouped by cell (``cell`` ascending, cell ``c``'s at ``starts[c]:starts[c + 1]``), each with its index
    into the query's hits and whether it lies on its cell's line; and per cell that line,
    ``t_query = slope * t_asset + offset``."""

    cell: np.ndarray
    starts: np.ndarray
    hit: np.ndarray
    inlier: np.ndarray
    slope: np.ndarray
    offset: np.ndarray

    def on_line(self, cell: int) -> np.ndarray:
        """The cell's hits that lie on its line, as indices into the query's hits."""
        own = slice(self.starts[cell], self.starts[cell + 1])
        return self.hit[own][self.inlier[own]]


def cell_lines(asset: np.ndarray, shift: np.ndarray, delay: np.ndarray, query_t: np.ndarray, asset_t: np.ndarray,
               alignments: list[tuple[int, float, int]], cfg: LandmarkConfig) -> CellLines:
    """The line through each alignment cell's hits (asset, pitch shift in bins, delay bin), and its inliers.

    ``asset``, ``shift``, ``delay`` (query minus asset frame), ``query_t`` and ``asset_t`` (whole anchor frames)
    are per hit. A cell's hits are its asset's within ``_PITCH_REACH`` bins of its shift and ``verify_reach``
    frames of its delay bin's centre; every cell holds at least its own hits, so none is empty.
    """
    cell, hit = _members(asset, shift, delay, alignments, cfg)
    starts = _starts(cell, len(alignments))
    centre = _middle(np.sort((cell.astype(np.int64) << 32) | asset_t[hit]) & 0xFFFFFFFF, starts)
    query_t, asset_t = query_t[hit].astype(np.float64), asset_t[hit].astype(np.float64)
    slope, offset = _hough_lines(cell, starts, query_t, asset_t - centre[cell], cfg)
    offset -= slope * centre
    inlier = np.abs(query_t - slope[cell] * asset_t - offset[cell]) <= cfg.inlier_frames
    slope, offset, inlier = _refit(cell, starts, query_t, asset_t, inlier, slope, offset, cfg)
    return CellLines(cell, np.append(starts, len(cell)), hit, inlier, slope, offset)


def _members(asset: np.ndarray, shift: np.ndarray, delay: np.ndarray, alignments: list[tuple[int, float, int]],
             cfg: LandmarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """(cell, hit index) for every hit each cell's line is sought among, cell by cell. Hits come asset by asset,
    so a cell's are found among its asset's block by two comparisons."""
    block_starts = np.flatnonzero(np.diff(asset, prepend=-1))
    block_sizes = np.diff(np.append(block_starts, len(asset)))
    block_of = dict(zip(asset[block_starts].tolist(), range(len(block_starts)), strict=True))
    block = np.array([block_of[owner] for owner, _, _ in alignments], dtype=np.int64)
    hit = expand_ranges(block_starts[block], block_sizes[block])
    cell = np.repeat(np.arange(len(alignments)), block_sizes[block])
    pitch = np.array([pitch for _, pitch, _ in alignments], dtype=shift.dtype)
    centre = (np.array([bin_index for _, _, bin_index in alignments], dtype=np.float64) + 0.5) * cfg.delay_bin
    near = (np.abs(shift[hit] - pitch[cell]) <= _PITCH_REACH) & (np.abs(delay[hit] - centre[cell]) <= cfg.verify_reach)
    return cell[near], hit[near]


def _hough_lines(cell: np.ndarray, starts: np.ndarray, query_t: np.ndarray, from_centre: np.ndarray,
                 cfg: LandmarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, (slope, offset) of the line ``query_t = slope * from_centre + offset`` through most of its hits,
    ``from_centre`` being asset time minus the cell's median asset time: a grid step in slope then moves
    offsets by at most ``tempo_step`` times the copy's length, not times its position in the asset.

    Votes go to (slope, offset bin) on a grid of slopes (1 / tempo) and ``offset_bin``-frame offset bins,
    counted in windows of two bins so a line on a bin edge is not split; the first best window in (slope, bin)
    order wins and the offset is the median of its hits.
    """
    steps = int(round(cfg.max_tempo_change / cfg.tempo_step))
    slopes = 1.0 + cfg.tempo_step * np.arange(-steps, steps + 1)
    rows = len(slopes)
    bins = np.multiply(slopes[:, None], from_centre[None, :])  # [slopes, hits]: the offset each slope implies,
    np.subtract(query_t[None, :], bins, out=bins)
    np.divide(bins, cfg.offset_bin, out=bins)  # in bins, floored: whole numbers in float64 from here
    np.floor(bins, out=bins)
    # A hit's bin moves monotonically with the slope, so its extremes are in the first and last rows.
    low = np.minimum.reduceat(np.minimum(bins[0], bins[-1]), starts).astype(np.int64)
    # Each cell's grid is [slopes, width] with one width for all cells (the widest's, plus an empty column so
    # a window never reaches into the next row), laid end to end. Bins become positions in the grids in place
    # (the int64 view shares the float64 memory): ~10 MB a query that need no fresh allocation.
    width = int((np.maximum.reduceat(np.maximum(bins[0], bins[-1]), starts) - low).max()) + 2
    base = np.arange(len(starts)) * (rows * width)
    position = bins.view(np.int64)
    np.copyto(position, bins, casting="unsafe")
    position += (base - low)[cell]
    for row in range(1, rows):
        position[row] += row * width
    votes = np.bincount(position.reshape(-1), minlength=len(starts) * rows * width)
    windows = votes.copy()
    windows[:-1] += votes[1:]
    windows[width - 1::width] = votes[width - 1::width]  # a window does not reach into the next row
    at_best = np.flatnonzero(windows == np.repeat(np.maximum.reduceat(windows, base), rows * width))
    slope_i, bin_i = np.divmod(at_best[np.searchsorted(at_best, base)] - base, width)
    slope = slopes[slope_i]
    offset = query_t - slope[cell] * from_centre
    offset_bin = np.floor(offset / cfg.offset_bin) - low[cell]
    window = (offset_bin >= bin_i[cell]) & (offset_bin <= bin_i[cell] + 1)
    in_window, offset = cell[window], offset[window]
    return slope, _middle(offset[np.lexsort((offset, in_window))], _starts(in_window, len(starts)))


def _refit(cell: np.ndarray, starts: np.ndarray, query_t: np.ndarray, asset_t: np.ndarray, inlier: np.ndarray,
           slope: np.ndarray, offset: np.ndarray,
           cfg: LandmarkConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares through each cell's inliers, kept where they span over a second, the slope stays within
    the searched tempi and at least as many hits lie within ``inlier_frames`` of it: the grid's slope step
    (0.5 % tempo) is coarse for a 30 s copy."""
    cells = len(starts)
    count = np.bincount(cell, weights=inlier, minlength=cells)
    spread = (np.maximum.reduceat(np.where(inlier, asset_t, -np.inf), starts)
              - np.minimum.reduceat(np.where(inlier, asset_t, np.inf), starts))
    eligible = (count > 0) & (spread > cfg.sample_rate / cfg.hop)
    n = np.where(eligible, count, 1.0)
    mean_x = np.bincount(cell, weights=np.where(inlier, asset_t, 0.0), minlength=cells) / n
    mean_y = np.bincount(cell, weights=np.where(inlier, query_t, 0.0), minlength=cells) / n
    dx, dy = np.where(inlier, asset_t - mean_x[cell], 0.0), query_t - mean_y[cell]
    sxx = np.bincount(cell, weights=dx * dx, minlength=cells)
    fitted_slope = np.bincount(cell, weights=dx * dy, minlength=cells) / np.where(eligible, sxx, 1.0)
    fitted_offset = mean_y - fitted_slope * mean_x
    refined = np.abs(query_t - fitted_slope[cell] * asset_t - fitted_offset[cell]) <= cfg.inlier_frames
    better = eligible & (np.abs(fitted_slope - 1) <= cfg.max_tempo_change) & (
        np.bincount(cell, weights=refined, minlength=cells) >= count)
    return (np.where(better, fitted_slope, slope), np.where(better, fitted_offset, offset),
            np.where(better[cell], refined, inlier))


@dataclass(frozen=True)
class Stretches:
    """Runs of a cell's on-line query triplets long enough to report: their cell (ascending), first and last
    anchor frame, last triplet's end frame, and how many distinct triplets."""

    cell: np.ndarray
    start: np.ndarray
    last: np.ndarray
    end: np.ndarray
    hits: np.ndarray


def long_stretches(lines: CellLines, query_idx: np.ndarray, t1: np.ndarray, t3: np.ndarray, min_duration_s: float,
                   cfg: LandmarkConfig) -> Stretches:
    """Each cell's distinct on-line query triplets (``query_idx`` maps a hit to one; ``t1``, ``t3`` are the
    query's triplet frames, ``t1`` ascending), split where ``max_gap_s`` passes without one; kept when at least
    ``min_hits`` triplets span at least ``min_duration_s``. Most cells keep none."""
    distinct = sorted_unique((lines.cell[lines.inlier].astype(np.int64) << 32) | query_idx[lines.hit[lines.inlier]])
    cell, triplet = distinct >> 32, distinct & 0xFFFFFFFF
    first, end = t1[triplet], t3[triplet]
    seconds_per_frame = cfg.hop / cfg.sample_rate
    split = np.ones(len(distinct), dtype=bool)
    split[1:] = (cell[1:] != cell[:-1]) | (np.diff(first) > cfg.max_gap_s / seconds_per_frame)
    starts = np.flatnonzero(split)
    if not len(starts):
        return Stretches(*(np.zeros(0, dtype=np.int64) for _ in range(5)))
    hits = np.diff(np.append(starts, len(distinct)))
    start, last = np.minimum.reduceat(first, starts), np.maximum.reduceat(first, starts)
    end = np.maximum.reduceat(end, starts)
    long = (hits >= cfg.min_hits) & ((end - start) * seconds_per_frame >= min_duration_s)
    return Stretches(cell[starts][long], start[long], last[long], end[long], hits[long])


def _starts(cell: np.ndarray, cells: int) -> np.ndarray:
    """Index of each cell's first hit (hits grouped by cell, cells ascending)."""
    counts = np.bincount(cell, minlength=cells)
    return np.cumsum(counts) - counts


def _middle(ordered: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.median`` of each cell's values, given them sorted within cells (cells ascending, none empty) and
    the cells' start indices: the middle value, or the mean of the middle two."""
    counts = np.diff(np.append(starts, len(ordered)))
    return (ordered[starts + (counts - 1) // 2] + ordered[starts + counts // 2]) / 2
