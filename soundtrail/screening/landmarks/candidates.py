"""Stage one of a landmark query: the few assets worth verifying, chosen by quad hashes at any index size.

Triplet hashes are common by chance: a 30 s query fetches ~6,000 hits per indexed 30 s track, 600 million at
100,000 tracks, so counting them per alignment cannot be fast. A quad (an anchor and three partners, see
:mod:`soundtrail.screening.landmarks.hashes`) is ~25x rarer by chance, and only 1 in ``quad_sample`` is used, so the
same query fetches ~25 quad hits per indexed track; an edited 5 s copy still contributes ~20 hits that share one
asset, one pitch shift and one delay. Counting hits per (asset, semitone, 1 s of delay) cell and keeping the
assets of the strongest cells leaves ``candidate_assets`` assets for the triplet stage, whose cost then no longer
grows with the index.

Cells are counted in a hashed table rather than by sorting (a sort of the millions of hits at 100,000 tracks
takes far longer than one ``bincount``): two cells sharing a bucket only add chance counts to each other, and the
table has 1-2 buckets per hit (a larger one counts no better, and its random accesses miss the cache more).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from soundtrail.screening.arrays import expand_ranges, find_runs, key_runs, sorted_unique
from soundtrail.screening.landmarks.hashes import LandmarkConfig, Quads, probe_hashes, quad_fine_values, top_hash_bits

_DELAY_CELL = 62  # frames: 1 s of query time - asset time


class QuadCandidates:
    """Every indexed asset's sampled quads, sorted by hash: hash -> (asset number, anchor frame, anchor bin)."""

    def __init__(self, config: LandmarkConfig) -> None:
        self.config = config
        self._pending: list[tuple[int, Quads]] = []
        self._keys = np.zeros(0, dtype=np.int64)
        self._asset = np.zeros(0, dtype=np.int32)
        self._t1 = np.zeros(0, dtype=np.int32)
        self._f1 = np.zeros(0, dtype=np.float32)
        self._distinct_keys = np.zeros(0, dtype=np.int64)  # _keys without repeats, and where each one's run
        self._key_starts = np.zeros(1, dtype=np.int64)  # starts in _keys (one more: len(_keys))

    @property
    def entries(self) -> int:
        return len(self._keys) + sum(len(quads.hashes) for _, quads in self._pending)

    def add(self, asset: int, quads: Quads) -> None:
        self._pending.append((asset, quads))

    def arrays(self) -> dict[str, np.ndarray]:
        """The sorted index and its lookups, for saving (see :meth:`from_arrays`): stored, so that loading needs
        no pass over all keys."""
        self._flush()
        return {"quad_keys": self._keys, "quad_asset": self._asset, "quad_t1": self._t1, "quad_f1": self._f1,
                "quad_distinct_keys": self._distinct_keys, "quad_key_starts": self._key_starts}

    @classmethod
    def from_arrays(cls, config: LandmarkConfig, stored: Mapping[str, np.ndarray]) -> QuadCandidates:
        index = cls(config)
        index._keys, index._asset, index._t1, index._f1, index._distinct_keys, index._key_starts = (
            stored[f"quad_{k}"] for k in ("keys", "asset", "t1", "f1", "distinct_keys", "key_starts"))
        return index

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [quads.hashes for _, quads in self._pending])
        asset = np.concatenate([self._asset] + [np.full(len(q.t1), i, np.int32) for i, q in self._pending])
        t1 = np.concatenate([self._t1] + [quads.t1 for _, quads in self._pending])
        f1 = np.concatenate([self._f1] + [quads.f1 for _, quads in self._pending])
        self._pending = []
        order = np.argsort(keys, kind="stable")
        self._keys, self._asset, self._t1, self._f1 = keys[order], asset[order], t1[order], f1[order]
        self._distinct_keys, self._key_starts = key_runs(self._keys)

    def best_assets(self, quads: Quads, count: int) -> np.ndarray:
        """Asset numbers of the ``count`` strongest (asset, semitone, delay) cells' assets, strongest first."""
        self._flush()
        cfg = self.config
        if not len(quads.hashes) or not len(self._distinct_keys):
            return np.zeros(0, dtype=np.int64)
        owner, probes = probe_hashes(cfg, quads, quad_fine_values(cfg))
        first, counts = find_runs(self._distinct_keys, self._key_starts, probes)
        posting = expand_ranges(first, counts)
        # Millions of hits a query at 100,000 tracks: the arrays below are computed in place where they can be,
        # and kept narrow, because each new one is fresh memory that must be zeroed.
        shift = np.repeat(quads.f1[owner], counts)
        shift -= self._f1[posting]
        near = shift <= cfg.max_shift_bins
        near &= shift >= -cfg.max_shift_bins
        posting, shift = posting[near], shift[near]
        if not len(posting):
            return np.zeros(0, dtype=np.int64)
        delay_cell = np.repeat(quads.t1[owner], counts)[near]  # int32, as stored: frame differences fit
        delay_cell -= self._t1[posting]
        delay_cell //= _DELAY_CELL
        shift /= cfg.semitone_bins
        return _strongest_cells(self._asset[posting], np.rint(shift, out=shift).astype(np.int8), delay_cell, count)


def _strongest_cells(asset: np.ndarray, semitone: np.ndarray, delay_cell: np.ndarray, count: int) -> np.ndarray:
    """Assets of the cells with most hits (a cell's count plus its larger delay neighbour's: a copy whose delay
    sits near a cell edge, or drifts with a tempo change, splits its hits between two), ``count`` at most."""
    semitone_low = int(semitone.min())
    semitone_span = int(semitone.max()) - semitone_low + 1
    delay_base = int(delay_cell.min()) - 1
    delay_span = int(delay_cell.max()) - delay_base + 2
    # ((asset * semitone_span + semitone - semitone_low) * delay_span + delay_cell - delay_base), in place (see
    # QuadCandidates.best_assets: at 100,000 tracks each temporary would be ~25 MB of fresh memory)
    cell = asset.astype(np.int64)
    cell *= semitone_span
    cell += semitone
    cell -= semitone_low
    cell *= delay_span
    cell += delay_cell
    cell -= delay_base
    buckets = 1 << int(len(cell)).bit_length()
    bucket = _bucket(cell, buckets)
    votes = np.bincount(bucket, minlength=buckets)
    buckets_with = np.cumsum(np.bincount(votes)[::-1])[::-1]  # [v]: buckets with at least v votes
    least = max(1, int(np.searchsorted(-buckets_with, -8 * count)))  # the ~8 * count fullest buckets' votes
    # A table of booleans, not the votes themselves, is read back per hit: 8x smaller, it stays in cache.
    cells = sorted_unique(cell[(votes >= least)[bucket]])
    support = votes[_bucket(cells, buckets)] + np.maximum(votes[_bucket(cells - 1, buckets)],
                                                          votes[_bucket(cells + 1, buckets)])
    ranked_assets = cells[np.argsort(-support, kind="stable")] // (semitone_span * delay_span)
    _, first = np.unique(ranked_assets, return_index=True)
    return ranked_assets[np.sort(first)][:count]


def _bucket(cell: np.ndarray, buckets: int) -> np.ndarray:
    """A cell's bucket in a table of ``buckets`` (a power of two)."""
    return top_hash_bits(cell, buckets.bit_length() - 1)
