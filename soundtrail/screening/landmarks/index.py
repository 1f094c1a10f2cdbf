"""Matching landmark hashes: where a query holds a pitch-shifted or tempo-changed copy of an indexed asset.

Hashing is in :mod:`soundtrail.screening.landmarks.hashes`. A query runs in three steps:

1. when more than ``candidate_assets`` assets are indexed, their quads choose that many candidates
   (:mod:`soundtrail.screening.landmarks.candidates`), so the steps below cost the same at 1,000 or 100,000 assets;
2. the candidates' triplets, stored asset by asset and sorted by hash within each, are matched against the
   query's probes, and hits are counted per (asset, pitch shift, 0.5 s delay) cell. Cells are 0.5 s wide: with
   2 s cells, 30 s of music sharing progressions with many assets outvoted a 5 s copy's cell;
3. for the best cells a Hough transform over a grid of slopes (1 / tempo) finds the line
   ``t_query = slope * t_asset + offset`` that most hits lie on, and the hits near that line give the stretch
   (all cells at once: :mod:`soundtrail.screening.landmarks.lines`).

Its score (see ``_score``) is the fraction of the asset's anchor peaks in the stretch that are found on the
line, times sqrt(duration / 5 s), capped at 1. On the release benchmark's synthesized corpus a 5 s copy scores
~1 unedited and mostly 0.45-0.9 after pitch or tempo edits or under other music at -6 dB; unrelated music stays
mostly under 0.3, but 4-5 s of an unrelated track that shares a chord progression and comping rhythm at a nearby
key and tempo (which pitch and tempo search make look alike) reaches ~0.43: the screen's threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from soundtrail.atomic import atomic_path, atomic_write_text
from soundtrail.screening.arrays import expand_ranges, find_runs, key_runs, sorted_unique
from soundtrail.screening.landmarks.candidates import QuadCandidates
from soundtrail.screening.landmarks.hashes import (
    LandmarkConfig,
    Landmarks,
    Triplets,
    landmarks,
    probe_hashes,
    triplet_fine_values,
)
from soundtrail.screening.landmarks.lines import Stretches, cell_lines, long_stretches
from soundtrail.screening.method import Content, IndexedMethod, Match

_MANIFEST = "landmarks.json"
_PROBE_TABLE = 1 << 20  # entries of the table that screens stored triplets against a query's ~120,000 probes


class LandmarkIndex:
    """Every asset's triplets, asset by asset and sorted by hash within each, and its quads for choosing candidates.

    Asset-major storage is what keeps a query's cost flat: only the candidates' triplets are read, and adding
    assets appends to the arrays instead of re-sorting all of them.
    """

    def __init__(self, config: LandmarkConfig | None = None) -> None:
        self.config = config or LandmarkConfig()
        self._asset_ids: list[str] = []
        self._known: set[str] = set()
        self._pending: list[tuple[int, Triplets]] = []
        self._candidates = QuadCandidates(self.config)
        self._hashes = np.zeros(0, dtype=np.int64)
        self._asset = np.zeros(0, dtype=np.int32)
        self._t1 = np.zeros(0, dtype=np.int32)
        self._f1 = np.zeros(0, dtype=np.float32)
        self._asset_starts = np.zeros(1, dtype=np.int64)  # asset i's triplets are [starts[i], starts[i + 1])
        self._anchors = np.zeros(0, dtype=np.int64)  # sorted _anchor_key of every indexed anchor peak

    def __len__(self) -> int:
        return len(self._asset_ids)

    @property
    def asset_ids(self) -> list[str]:
        return list(self._asset_ids)

    @property
    def entries(self) -> int:
        """Indexed triplets (20 bytes each in memory) and quads (20 bytes each)."""
        pending = sum(len(found.hashes) for _, found in self._pending)
        return len(self._hashes) + pending + self._candidates.entries

    def add(self, asset_id: str, audio_mono: np.ndarray, sample_rate: int) -> None:
        self.add_landmarks(asset_id, landmarks(audio_mono, sample_rate, self.config))

    def add_landmarks(self, asset_id: str, found: Landmarks) -> None:
        """Index hashes computed elsewhere (by :func:`landmarks` with this index's config, e.g. in a worker)."""
        if asset_id in self._known:
            raise ValueError(f"asset {asset_id!r} is already in the landmark index")
        self._asset_ids.append(asset_id)
        self._known.add(asset_id)
        number = len(self._asset_ids) - 1
        self._pending.append((number, found.triplets))
        self._candidates.add(number, found.quads)

    def _flush(self) -> None:
        if not self._pending:
            return
        by_hash = [(number, found, np.argsort(found.hashes, kind="stable")) for number, found in self._pending]
        self._pending = []
        hashes = [found.hashes[order] for _, found, order in by_hash]
        asset = [np.full(len(order), number, np.int32) for number, _, order in by_hash]
        t1 = [found.t1[order] for _, found, order in by_hash]
        f1 = [found.f1[order] for _, found, order in by_hash]
        new_anchors = sorted_unique(_anchor_key(np.concatenate(asset), np.concatenate(t1), np.concatenate(f1)))
        self._hashes = np.concatenate([self._hashes, *hashes])
        self._asset = np.concatenate([self._asset, *asset])
        self._t1 = np.concatenate([self._t1, *t1])
        self._f1 = np.concatenate([self._f1, *f1])
        self._anchors = np.concatenate([self._anchors, new_anchors])  # new assets' keys sort after the old ones
        self._asset_starts = np.searchsorted(self._asset, np.arange(len(self._asset_ids) + 1))

    def _candidate_assets(self, found: Landmarks) -> np.ndarray:
        """All assets while there are few; otherwise the ones the quads point at."""
        if len(self._asset_ids) <= self.config.candidate_assets:
            return np.arange(len(self._asset_ids))
        return self._candidates.best_assets(found.quads, self.config.candidate_assets)

    def _hits(self, found: Triplets, assets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query triplet index, stored entry) for every probe of the query that an entry of ``assets`` has.

        The entries are looked up among the sorted probes (not the other way round): entries are sorted within
        each asset, so the binary searches walk the probes in order, asset after asset. Most entries match no
        probe, so a table indexed by the probes' low bits first drops ~80 % of them for the price of one gather.
        Hits come out asset by asset.
        """
        owner, probes = probe_hashes(self.config, found, triplet_fine_values(self.config))
        starts = self._asset_starts[assets]
        entries = expand_ranges(starts, self._asset_starts[assets + 1] - starts)
        probed = np.zeros(_PROBE_TABLE, dtype=bool)
        probed[probes & (_PROBE_TABLE - 1)] = True
        entries = entries[probed[self._hashes[entries] & (_PROBE_TABLE - 1)]]
        first, counts = find_runs(*key_runs(probes), self._hashes[entries])  # probes repeat: search each once
        return owner[expand_ranges(first, counts)], np.repeat(entries, counts)

    def query(self, audio_mono: np.ndarray, sample_rate: int, min_duration_s: float = 5.0) -> list[Match]:
        """Copied stretches of at least ``min_duration_s``, best score first."""
        self._flush()
        cfg = self.config
        found = landmarks(audio_mono, sample_rate, cfg)
        if not len(found.triplets.t1) or not len(self._hashes):
            return []
        query_idx, posting = self._hits(found.triplets, self._candidate_assets(found))
        shift = found.triplets.f1[query_idx] - self._f1[posting]
        near = np.abs(shift) <= cfg.max_shift_bins
        query_idx, posting, shift = query_idx[near], posting[near], shift[near]
        if not len(posting):  # e.g. a second of audio whose few quads chose no candidate
            return []
        asset = self._asset[posting].astype(np.int64)
        delay = found.triplets.t1[query_idx].astype(np.int64) - self._t1[posting]
        alignments = _top_alignments(asset, shift, delay, cfg)
        if not alignments:
            return []
        lines = cell_lines(asset, shift, delay, found.triplets.t1[query_idx], self._t1[posting], alignments, cfg)
        stretches = long_stretches(lines, query_idx, found.triplets.t1, found.triplets.t3, min_duration_s, cfg)
        matches = []
        for cell in sorted_unique(stretches.cell).tolist():
            on_line = lines.on_line(cell)
            matches.extend(self._scored(stretches, cell, alignments[cell][0], query_idx[on_line], posting[on_line],
                                        shift[on_line], float(lines.slope[cell]), float(lines.offset[cell]),
                                        found.triplets.t1))
        return _distinct(matches)

    def _scored(self, stretches: Stretches, cell: int, asset: int, query_idx: np.ndarray, posting: np.ndarray,
                shift: np.ndarray, slope: float, offset: float, query_t1: np.ndarray) -> list[Match]:
        """A match for each of the cell's long stretches, scored by the asset's anchor peaks found on its line
        (``query_idx``, ``posting`` and ``shift`` are the cell's on-line hits)."""
        cfg = self.config
        seconds_per_frame = cfg.hop / cfg.sample_rate
        hit_anchor = _anchor_key(asset, self._t1[posting], self._f1[posting])
        hit_t1 = query_t1[query_idx]
        semitones = float(np.median(shift)) * 12 / cfg.bins_per_octave
        out = []
        for i in np.flatnonzero(stretches.cell == cell).tolist():
            start, end, last = int(stretches.start[i]), int(stretches.end[i]), int(stretches.last[i])
            span = np.array([np.ceil((start - offset) / slope), np.floor((last - offset) / slope) + 1], np.int64)
            lo, hi = np.searchsorted(self._anchors, _anchor_key(asset, span, np.zeros(2)))
            if hi <= lo:
                continue
            duration_s = (end - start) * seconds_per_frame
            in_stretch = (hit_t1 >= start) & (hit_t1 <= last)
            found_anchors = np.count_nonzero(np.isin(self._anchors[lo:hi], hit_anchor[in_stretch]))
            score = _score(found_anchors, int(hi - lo), duration_s, cfg)
            out.append(Match(
                asset_id=self._asset_ids[asset], query_offset_s=round(start * seconds_per_frame, 3),
                asset_offset_s=round((start - offset) / slope * seconds_per_frame, 3),
                duration_s=round(duration_s, 3), score=round(score, 4), method=NAME,
                semitones=round(semitones, 2), tempo=round(1.0 / slope, 4),
                details={"hits": int(stretches.hits[i])},  # query triplets on the line inside the stretch
            ))
        return out

    def save(self, directory: str | Path) -> None:
        """One ``.npy`` file per array, then ``landmarks.json`` (config, asset ids, array names), written last.

        Not one ``.npz``: :meth:`load` maps ``.npy`` files instead of reading them, and a query then reads only its
        candidates' triplets and the quads it probes, so opening the index costs the same at any size, and a
        100,000-track index (~33 GB) is served without holding it in memory. Until the manifest is rewritten the
        folder reads as unfinished.
        """
        self._flush()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _MANIFEST).unlink(missing_ok=True)
        arrays = {"hashes": self._hashes, "asset": self._asset, "t1": self._t1, "f1": self._f1,
                  "asset_starts": self._asset_starts, "anchors": self._anchors, **self._candidates.arrays()}
        for name, array in arrays.items():
            with atomic_path(directory / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        manifest = {"config": asdict(self.config), "asset_ids": self._asset_ids, "arrays": sorted(arrays)}
        atomic_write_text(directory / _MANIFEST, json.dumps(manifest))

    @classmethod
    def load(cls, directory: str | Path) -> LandmarkIndex:
        """The index :meth:`save` wrote, its arrays memory-mapped read-only (adding assets copies them to memory).

        Raises ``FileNotFoundError`` for a folder without its manifest and ``ValueError`` for arrays that do not
        fit together (a truncated or mixed-up file).
        """
        directory = Path(directory)
        manifest = json.loads((directory / _MANIFEST).read_text())
        stored = {name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                  for name in manifest["arrays"]}
        index = cls(LandmarkConfig(**manifest["config"]))
        index._hashes, index._asset, index._t1, index._f1 = (stored[k] for k in ("hashes", "asset", "t1", "f1"))
        index._asset_starts, index._anchors = stored["asset_starts"], stored["anchors"]
        index._candidates = QuadCandidates.from_arrays(index.config, stored)
        index._asset_ids = [str(asset_id) for asset_id in manifest["asset_ids"]]
        index._known = set(index._asset_ids)
        triplets = len(index._hashes)
        if {len(index._asset), len(index._t1), len(index._f1), int(index._asset_starts[-1])} != {triplets} or (
                index._asset_starts.shape != (len(index._asset_ids) + 1,)):
            raise ValueError(f"{directory}: landmark arrays of mismatched lengths (a damaged index)")
        return index


def _anchor_key(asset: int | np.ndarray, t1: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """One int64 per indexed anchor peak, ordered by asset then time: asset | frame | log-frequency in 1/16 bins."""
    fine = np.clip(np.rint(np.asarray(f1, dtype=np.float64) * 16), 0, 4095).astype(np.int64)
    return (np.asarray(asset, dtype=np.int64) << 32) | (np.asarray(t1, dtype=np.int64) << 12) | fine


def _score(found: int, anchors: int, duration_s: float, cfg: LandmarkConfig) -> float:
    """Fraction of the asset's anchor peaks in the stretch found, times sqrt(duration / ``score_reference_s``), <= 1.

    Why anchors of the *asset*: a triplet needs all three of its peaks to survive an edit, and only ~70 % of peaks
    survive a phase-vocoder pitch or tempo change, so ~35 % of triplets do, while an anchor that survives almost
    always keeps one of its triplets; and other music mixed over a copy adds peaks to the query but takes none
    away from the asset, so counting on the asset's side keeps a mixed copy's score up.
    Why the length weight: the fraction alone is as high for 4-5 s of an unrelated track that shares a chord
    progression at a nearby key and tempo as for an edited copy, but such chance alignments stay short, while a
    copy keeps its line for as long as it lasts; for a fixed fraction evidence grows like a binomial z-score, with
    the square root of the number of peaks examined.
    """
    return min(1.0, found / anchors * float(np.sqrt(max(duration_s, 0.0) / cfg.score_reference_s)))


def _distinct(matches: list[Match]) -> list[Match]:
    """Neighbouring candidate cells find the same stretch again: keep the best-scoring one, best first."""
    kept: list[Match] = []
    for m in sorted(matches, key=lambda m: (-m.score, -m.duration_s)):
        if not any(k.asset_id == m.asset_id and m.query_offset_s < k.query_offset_s + k.duration_s
                   and k.query_offset_s < m.query_offset_s + m.duration_s
                   and abs((k.asset_offset_s - k.query_offset_s) - (m.asset_offset_s - m.query_offset_s)) < 2.0
                   for k in kept):
            kept.append(m)
    return kept


def _top_alignments(asset: np.ndarray, shift: np.ndarray, delay: np.ndarray,
                    cfg: LandmarkConfig) -> list[tuple[int, float, int]]:
    """(asset, pitch shift in bins, delay bin) cells with most hits (at least ``min_hits``), best first.

    ``delay`` is query time minus asset time, binned ``delay_bin`` frames wide: a copy's hits share one delay (up
    to the drift its tempo change builds up), while chance hits from music in the same key spread over all of
    them. Counts include the 3 x 3 neighbouring cells, since a shift or delay on a bin edge splits its hits;
    a cell next to one already taken for the same asset is skipped.
    """
    if not len(asset):
        return []
    pitch_span = 2 * int(np.ceil(cfg.max_shift_bins)) + 3
    delay_bin = np.floor(delay / cfg.delay_bin).astype(np.int64)
    delay_base = int(delay_bin.min()) - 1
    delay_span = int(delay_bin.max()) - delay_base + 2
    # Assets are numbered by their rank among the hits' assets (an order-keeping renumbering, so cells and their
    # ties rank as before): the cell grid then spans the few candidates, not every indexed asset, and is counted
    # densely at any index size.
    present = np.flatnonzero(np.bincount(asset))
    cell = np.searchsorted(present, asset) * pitch_span + np.rint(shift).astype(np.int64) + pitch_span // 2
    keys, support = _neighbourhood_votes(cell * delay_span + delay_bin - delay_base, delay_span)
    ranked: list[tuple[int, float, int]] = []
    taken: dict[int, list[tuple[float, int]]] = {}  # asset -> its (pitch, delay bin) cells in ``ranked``
    same_reach = max(1, int(round(cfg.same_alignment / cfg.delay_bin)))
    for i in _strongest_first(support, cfg.min_hits, 16 * cfg.candidates):
        if len(ranked) == cfg.candidates:
            break
        rank, rest = divmod(int(keys[i]), pitch_span * delay_span)
        owner = int(present[rank])
        pitch_bins, bin_index = divmod(rest, delay_span)
        pitch_bins, bin_index = float(pitch_bins - pitch_span // 2), bin_index + delay_base
        mine = taken.setdefault(owner, [])
        if not any(abs(p - pitch_bins) <= 1 and abs(d - bin_index) <= same_reach for p, d in mine):
            ranked.append((owner, pitch_bins, bin_index))
            mine.append((pitch_bins, bin_index))
    return ranked


def _neighbourhood_votes(cells: np.ndarray, delay_span: int) -> tuple[np.ndarray, np.ndarray]:
    """(occupied cells ascending, hits in each one's 3 x 3 pitch/delay neighbourhood).

    ``cells`` are ``(asset * pitch_span + pitch) * delay_span + delay`` with a free row and column around every
    occupied one, so a neighbour never wraps into another asset. When the cell grid is no larger than twice the
    hits it is counted densely (bincount, no sort), about 4x faster than sorting the ~4 million hits a 30 s
    query draws from 1,000 indexed tracks; a sparse grid (a short query, few hits per asset) is counted by sorting.
    """
    steps = [d_pitch * delay_span + d_delay for d_pitch in (-1, 0, 1) for d_delay in (-1, 0, 1)]
    grid = int(cells.max()) + delay_span + 2
    if grid <= 2 * len(cells):
        counts = np.bincount(cells, minlength=grid)
        keys = np.flatnonzero(counts)
        return keys, sum(counts[keys + step] for step in steps)
    keys, votes = np.unique(cells, return_counts=True)
    support = np.zeros_like(votes)
    for step in steps:
        at = np.minimum(np.searchsorted(keys, keys + step), len(keys) - 1)
        same = keys[at] == keys + step
        support[same] += votes[at[same]]
    return keys, support


def _strongest_first(support: np.ndarray, min_support: int, first: int) -> Iterator[int]:
    """Indices with ``support >= min_support``, highest first, ties in index order (a stable sort's order).

    Only the ``first`` strongest are sorted up front (a query has ~a million occupied cells and uses a few
    dozen); the rest are sorted only if the caller reads past them.
    """
    eligible = np.flatnonzero(support >= min_support)
    if len(eligible) > first:
        cut = np.partition(support[eligible], len(eligible) - first)[len(eligible) - first]
        strongest = eligible[support[eligible] >= cut]
        yield from strongest[np.argsort(-support[strongest], kind="stable")].tolist()
        eligible = eligible[support[eligible] < cut]
    yield from eligible[np.argsort(-support[eligible], kind="stable")].tolist()


NAME = "landmarks"


class LandmarksMethod(IndexedMethod):
    """The screen's landmark method: copies after a pitch shift (+-2.5 semitones) or tempo change (+-8 %), which
    Chromaprint misses. Its matches say the shift and tempo found. Score: see ``_score``."""

    name = NAME
    reads = "audio"
    flag = 0.43  # unrelated tracks sharing a progression and groove reach ~0.425
    block = 0.7  # 5 s copies after pitch/tempo edits score ~0.5-0.8, longer ones more
    version = 1

    def __init__(self, frame_rate: float | None = None) -> None:
        self.index = LandmarkIndex()

    def add(self, asset_id: str, content: Content) -> None:
        self.index.add(asset_id, content.audio, content.sample_rate)

    def query(self, content: Content, min_duration_s: float, min_score: float,
              proposals: Sequence[Match] = ()) -> list[Match]:
        return self.index.query(content.audio, content.sample_rate, min_duration_s)
