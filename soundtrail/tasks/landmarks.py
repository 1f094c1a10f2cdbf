"""Landmark triplets that survive pitch shift and tempo change (the Panako idea, in NumPy/SciPy).

Chromaprint compares chroma at fixed times, so a copy played 5 % faster or two semitones higher no longer lines
up. Here audio becomes a sparse set of spectral peaks on a log-frequency axis (``bins_per_octave`` bins per
octave), and each peak is joined with two later peaks into a triplet::

    log f ^        * p3                   hash = (band of f1 // band_bins,   coarse: a shift moves it <= 1 band
          |   * p2                                log(t3 - t1) bin,           tempo moves it <= 1 bin
          | * p1                                  (t2 - t1) / (t3 - t1),      tempo-invariant
          +------------------> t                  f2 - f1, f3 - f1)          pitch-invariant (log axis)

A pitch shift adds a constant to every log frequency and a tempo change scales every time, so ratios of time
differences and differences of log frequencies stay put; the two coarse fields are probed at their neighbouring
values when querying. Matching is two-stage: hash hits are counted per (asset, pitch shift, 2 s delay); for the
best few, a Hough transform over a grid of slopes (1 / tempo) finds the line ``t_query = slope * t_asset + offset``
that most hits lie on, and the hits near that line give the copied stretch. Candidate cells are 0.5 s of delay
wide: with 2 s cells, 30 s of music sharing progressions with many assets outvoted a 5 s copy's cell.

Its score (see ``_score``) is the fraction of the asset's anchor peaks in the stretch that are found on the
line, times sqrt(duration / 5 s), capped at 1. On the release benchmark's synthesized corpus a 5 s copy scores
~1 unedited and mostly 0.45-0.9 after pitch or tempo edits or under other music at -6 dB; unrelated music stays
mostly under 0.3, but 4-5 s of an unrelated track that shares a chord progression and comping rhythm at a nearby
key and tempo (which pitch and tempo search make look alike) reaches ~0.43: the screen's threshold.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.signal import stft

from soundtrail.audio import resample
from soundtrail.tasks.fingerprint import expand_ranges
from soundtrail.tasks.index_file import IndexFile


@dataclass
class LandmarkConfig:
    sample_rate: int = 8_000
    n_fft: int = 2048  # 256 ms: resolves semitones down to ~110 Hz
    hop: int = 128  # 16 ms frames
    f_min: float = 110.0
    octaves: int = 5
    bins_per_octave: int = 36  # a third of a semitone
    peak_frames: int = 6  # a peak is the maximum of +-6 frames ...
    peak_bins: int = 6  # ... and +-2 semitones
    peaks_per_second: int = 40  # dense: under other music at -6 dB the copy must keep enough peaks
    min_db: float = -90.0  # peaks quieter than this (full-scale sine ~ -6 dB) are noise floor
    min_dt: int = 4  # triplet partners lie 64 ms to 1.28 s after the anchor
    max_dt: int = 80
    max_df: int = 36  # ... and within an octave of it
    fan_out: int = 6  # each anchor pairs its first 6 partners: 15 triplets
    band_bins: int = 12  # anchor frequency band for the hash (4 semitones)
    ratio_levels: int = 8
    log_dt_step: float = 0.1  # hash bins of log(t3 - t1): 10 % wide
    max_semitones: float = 2.5  # searched pitch shifts
    max_tempo_change: float = 0.08  # searched tempo factors: 0.92 .. 1.08
    tempo_step: float = 0.005
    offset_bin: int = 8  # Hough offset bins, frames
    inlier_frames: float = 6.0
    max_gap_s: float = 1.5  # hits further apart than this start a new stretch
    min_hits: int = 8  # hits on one line before it is a candidate copy
    delay_bin: int = 31  # 0.5 s bins of query time - asset time, to pick candidate alignments
    candidates: int = 80  # (asset, pitch, delay) cells examined per query: with 40, chance alignments of music
    # sharing a progression outranked some 5 s copies mixed under other music (their recall: 0.85 -> 0.90 on one
    # draw of 20, 0.65 -> 0.68 on another of 40; unrelated music's scores unchanged)
    verify_reach: int = 312  # the line is sought among hits within 5 s of the cell's delay
    same_alignment: int = 125  # a cell within 2 s of a better one for the same asset and pitch is the same copy
    score_reference_s: float = 5.0  # a stretch this long scores its plain found fraction (see _score)


@dataclass(frozen=True)
class Triplets:
    """One recording's triplets: anchor time/frequency, last-peak time, and the hash each was indexed under."""

    t1: np.ndarray  # frames
    t3: np.ndarray
    f1: np.ndarray  # fractional log-frequency bins
    hashes: np.ndarray  # int64, exact (the query side probes neighbours of the coarse fields)
    log_dt: np.ndarray  # unquantised log(t3 - t1) / log_dt_step, for probing


def spectral_peaks(audio_mono: np.ndarray, sample_rate: int,
                   config: LandmarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """(frame, fractional log-frequency bin) of the strongest local maxima, ``peaks_per_second`` per second."""
    cfg = config
    audio = resample(np.asarray(audio_mono, dtype=np.float32).reshape(-1), sample_rate, cfg.sample_rate)
    if len(audio) < cfg.n_fft:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    _, _, spec = stft(audio, fs=cfg.sample_rate, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop, window="hann")
    power_db = 10.0 * np.log10(np.abs(spec) ** 2 + 1e-10)  # [fft bins, frames]
    n_log = cfg.octaves * cfg.bins_per_octave
    hz = cfg.f_min * 2.0 ** (np.arange(n_log) / cfg.bins_per_octave)
    position = hz * cfg.n_fft / cfg.sample_rate
    lower = np.floor(position).astype(int)
    frac = (position - lower)[:, None]
    log_spec = (1 - frac) * power_db[lower] + frac * power_db[lower + 1]  # [log bins, frames]
    size = (2 * cfg.peak_bins + 1, 2 * cfg.peak_frames + 1)
    floor = max(log_spec.max() - 60.0, cfg.min_db)  # digital silence has no peaks
    is_peak = (log_spec == maximum_filter(log_spec, size=size, mode="nearest")) & (log_spec > floor)
    bins, frames = np.nonzero(is_peak)
    strength = log_spec[bins, frames]
    per_block = int(cfg.sample_rate / cfg.hop)  # rank peaks within each second, so quiet passages keep theirs
    block = frames // per_block
    order = np.lexsort((-strength, block))
    block_sorted = block[order]
    first_of_block = np.searchsorted(block_sorted, block_sorted, side="left")
    keep = order[np.arange(len(order)) - first_of_block < cfg.peaks_per_second]
    bins, frames = bins[keep], frames[keep]
    fine_hz = _refine_hz(power_db, np.rint(position[bins]).astype(int), frames, cfg)
    log_bin = cfg.bins_per_octave * np.log2(np.maximum(fine_hz, 1.0) / cfg.f_min)
    order = np.lexsort((log_bin, frames))
    return frames[order], log_bin[order]


def _refine_hz(power_db: np.ndarray, fft_bin: np.ndarray, frames: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """Frequency of each peak by a parabola through the strongest FFT bin near it and its two neighbours."""
    candidates = np.clip(fft_bin[:, None] + np.array([-1, 0, 1]), 1, power_db.shape[0] - 2)
    best = candidates[np.arange(len(fft_bin)), np.argmax(power_db[candidates, frames[:, None]], axis=1)]
    left, mid, right = power_db[best - 1, frames], power_db[best, frames], power_db[best + 1, frames]
    denominator = left - 2 * mid + right
    shift = np.where(denominator < 0, 0.5 * (left - right) / np.where(denominator < 0, denominator, -1.0), 0.0)
    return (best + np.clip(shift, -0.5, 0.5)) * cfg.sample_rate / cfg.n_fft


def triplets(audio_mono: np.ndarray, sample_rate: int, config: LandmarkConfig) -> Triplets:
    """Every anchor peak joined with pairs of its first ``fan_out`` partners, hashed."""
    cfg = config
    t, f = spectral_peaks(audio_mono, sample_rate, cfg)
    if len(t) < 3:  # silence or a fragment: nothing to hash
        empty = np.zeros(0, dtype=np.int64)
        return Triplets(empty.astype(np.int32), empty.astype(np.int32), empty.astype(np.float32), empty,
                        empty.astype(np.float64))
    lo = np.searchsorted(t, t + cfg.min_dt, side="left")
    hi = np.searchsorted(t, t + cfg.max_dt, side="right")
    width = int(max(1, (hi - lo).max(initial=1)))
    partner = lo[:, None] + np.arange(width)[None, :]
    valid = partner < hi[:, None]
    partner = np.minimum(partner, len(t) - 1)
    valid &= np.abs(f[partner] - f[:, None]) <= cfg.max_df
    first = np.argsort(~valid, axis=1, kind="stable")[:, :cfg.fan_out]
    partner = np.take_along_axis(partner, first, axis=1)
    valid = np.take_along_axis(valid, first, axis=1)
    a_idx, b_idx = np.triu_indices(partner.shape[1], k=1)
    anchor = np.repeat(np.arange(len(t)), len(a_idx))
    p2, p3 = partner[:, a_idx].reshape(-1), partner[:, b_idx].reshape(-1)
    ok = (valid[:, a_idx] & valid[:, b_idx]).reshape(-1)
    anchor, p2, p3 = anchor[ok], p2[ok], p3[ok]
    ok = t[p3] > t[p2]
    anchor, p2, p3 = anchor[ok], p2[ok], p3[ok]
    dt13 = (t[p3] - t[anchor]).astype(np.float64)
    log_dt = np.log(dt13) / cfg.log_dt_step
    ratio = np.minimum(((t[p2] - t[anchor]) / dt13 * cfg.ratio_levels).astype(np.int64), cfg.ratio_levels - 1)
    df12 = np.rint(f[p2] - f[anchor]).astype(np.int64)
    df13 = np.rint(f[p3] - f[anchor]).astype(np.int64)
    band = np.floor(f[anchor] / cfg.band_bins).astype(np.int64)
    hashes = _hash(cfg, band, np.floor(log_dt).astype(np.int64), ratio, df12, df13)
    return Triplets(t[anchor].astype(np.int32), t[p3].astype(np.int32), f[anchor].astype(np.float32),
                    hashes, log_dt)


_BAND_OFFSET = 4  # hash fields must not go negative: the band below band 0 is probed too
_LOG_DT_VALUES = 64  # room for the log(t3 - t1) field


def _hash(cfg: LandmarkConfig, band: np.ndarray, log_dt: np.ndarray, ratio: np.ndarray,
          df12: np.ndarray, df13: np.ndarray) -> np.ndarray:
    span = 2 * cfg.max_df + 1
    key = (band + _BAND_OFFSET) * _LOG_DT_VALUES + log_dt
    key = key * cfg.ratio_levels + ratio
    return (key * span + df12 + cfg.max_df) * span + df13 + cfg.max_df


def _probe_hashes(cfg: LandmarkConfig, found: Triplets) -> tuple[np.ndarray, np.ndarray]:
    """(query triplet index, hash) for the triplet's own hash and the coarse fields' neighbours.

    A neighbouring band is probed only where the searched pitch shifts reach it from the anchor's frequency:
    the query drops hits further away than ``max_semitones``, so probing it would only fetch hits to discard.
    """
    span = 2 * cfg.max_df + 1
    fine = found.hashes % (cfg.ratio_levels * span * span)
    band = found.hashes // (_LOG_DT_VALUES * cfg.ratio_levels * span * span) - _BAND_OFFSET
    into_band = found.f1 - band * cfg.band_bins
    reach = cfg.max_semitones * cfg.bins_per_octave / 12 + 1e-3  # + float32 rounding of f1
    band_reached = {-1: into_band <= reach, 0: np.ones(len(band), dtype=bool), 1: cfg.band_bins - into_band <= reach}
    tempo_bins = np.log1p(cfg.max_tempo_change) / cfg.log_dt_step
    dt_low = np.floor(found.log_dt - tempo_bins).astype(np.int64)
    dt_high = np.floor(found.log_dt + tempo_bins).astype(np.int64)
    probes, owners = [], []
    index = np.arange(len(fine))
    for band_step in (-1, 0, 1):
        for dt_step in range(int(np.ceil(2 * tempo_bins)) + 1):
            dt = dt_low + dt_step
            use = (dt <= dt_high) & band_reached[band_step]
            key = (band[use] + band_step + _BAND_OFFSET) * _LOG_DT_VALUES + dt[use]
            probes.append(key * cfg.ratio_levels * span * span + fine[use])
            owners.append(index[use])
    return np.concatenate(owners), np.concatenate(probes)


@dataclass(frozen=True)
class LandmarkMatch:
    """A stretch of the query whose triplets line up with an asset's at one pitch shift and tempo."""

    asset_id: str
    query_offset_s: float
    asset_offset_s: float
    duration_s: float
    score: float
    semitones: float
    tempo: float  # query tempo / asset tempo: 1.05 when the copy plays 5 % faster
    hits: int = 0  # query triplets on the line inside the stretch

    def to_dict(self) -> dict[str, str | float]:
        return asdict(self)


class LandmarkIndex(IndexFile):
    """Inverted index from triplet hash to (asset, anchor time, anchor frequency), sorted NumPy arrays."""

    def __init__(self, config: LandmarkConfig | None = None) -> None:
        self.config = config or LandmarkConfig()
        self._asset_ids: list[str] = []
        self._known: set[str] = set()
        self._pending: list[tuple[int, Triplets]] = []
        self._keys = np.zeros(0, dtype=np.int64)
        self._asset = np.zeros(0, dtype=np.int32)
        self._t1 = np.zeros(0, dtype=np.int32)
        self._f1 = np.zeros(0, dtype=np.float32)
        self._anchors = np.zeros(0, dtype=np.int64)  # sorted _anchor_key of every indexed anchor peak
        self._distinct_keys = np.zeros(0, dtype=np.int64)  # _keys without repeats, and where each one's run
        self._key_starts = np.zeros(1, dtype=np.int64)  # starts in _keys (one more: len(_keys))

    def __len__(self) -> int:
        return len(self._asset_ids)

    @property
    def entries(self) -> int:
        """Indexed triplets (the index holds 20 bytes per entry in memory)."""
        return len(self._keys) + sum(len(found.hashes) for _, found in self._pending)

    def add(self, asset_id: str, audio_mono: np.ndarray, sample_rate: int) -> None:
        self.add_triplets(asset_id, triplets(audio_mono, sample_rate, self.config))

    def add_triplets(self, asset_id: str, found: Triplets) -> None:
        """Index triplets computed elsewhere (by :func:`triplets` with this index's config, e.g. in a worker)."""
        if asset_id in self._known:
            raise ValueError(f"asset {asset_id!r} is already in the landmark index")
        self._asset_ids.append(asset_id)
        self._known.add(asset_id)
        self._pending.append((len(self._asset_ids) - 1, found))

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [found.hashes for _, found in self._pending])
        asset = np.concatenate([self._asset] + [np.full(len(found.t1), i, np.int32) for i, found in self._pending])
        t1 = np.concatenate([self._t1] + [found.t1 for _, found in self._pending])
        f1 = np.concatenate([self._f1] + [found.f1 for _, found in self._pending])
        order = np.argsort(keys, kind="stable")
        self._keys, self._asset, self._t1, self._f1 = keys[order], asset[order], t1[order], f1[order]
        self._pending = []
        self._derive_lookups()

    def _derive_lookups(self) -> None:
        """Tables computed from the sorted arrays: the anchor peaks, and each distinct hash's run of entries.

        Probes are looked up among the distinct hashes (~234,000 for 14 million entries at 1,000 tracks, small
        enough to stay in cache), not among all entries: the ~120,000 probes of a 30 s query take 4 ms instead of
        40 ms for two binary searches over the entries.
        """
        self._anchors = np.unique(_anchor_key(self._asset, self._t1, self._f1))
        run_starts = np.flatnonzero(np.diff(self._keys, prepend=self._keys[:1] - 1))  # each hash's first entry
        self._distinct_keys = self._keys[run_starts]
        self._key_starts = np.append(run_starts, len(self._keys))

    def _postings(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first entry, entry count) for each probed hash; count 0 where no entry has it."""
        at = np.minimum(np.searchsorted(self._distinct_keys, probes), len(self._distinct_keys) - 1)
        present = self._distinct_keys[at] == probes
        return self._key_starts[at], np.where(present, self._key_starts[at + 1] - self._key_starts[at], 0)

    def query(self, audio_mono: np.ndarray, sample_rate: int, min_duration_s: float = 5.0) -> list[LandmarkMatch]:
        """Copied stretches of at least ``min_duration_s``, best score first."""
        self._flush()
        cfg = self.config
        found = triplets(audio_mono, sample_rate, cfg)
        if not len(found.t1) or not len(self._keys):
            return []
        owner, probes = _probe_hashes(cfg, found)
        order = np.argsort(probes)  # sorted needles: the binary searches walk the hashes in order
        owner, probes = owner[order], probes[order]
        lo, counts = self._postings(probes)
        query_idx = np.repeat(owner, counts)
        posting = expand_ranges(lo, counts)
        shift = found.f1[query_idx] - self._f1[posting]
        max_shift = cfg.max_semitones * cfg.bins_per_octave / 12
        near = np.abs(shift) <= max_shift
        query_idx, posting, shift = query_idx[near], posting[near], shift[near]
        asset = self._asset[posting].astype(np.int64)
        delay = found.t1[query_idx].astype(np.int64) - self._t1[posting]
        alignments = _top_alignments(asset, shift, delay, cfg)
        # Gather the candidate assets' hits once: masking all hits for each candidate took 40 passes over millions.
        is_candidate = np.zeros(len(self._asset_ids), dtype=bool)
        is_candidate[[owner for owner, _, _ in alignments]] = True
        keep = is_candidate[asset]
        query_idx, posting, shift, asset, delay = (x[keep] for x in (query_idx, posting, shift, asset, delay))
        matches = []
        for candidate, pitch, bin_index in alignments:
            centre = (bin_index + 0.5) * cfg.delay_bin
            use = (asset == candidate) & (np.abs(shift - pitch) <= 1.5) & (np.abs(delay - centre) <= cfg.verify_reach)
            matches.extend(self._stretches(found, query_idx[use], posting[use], shift[use], candidate,
                                           min_duration_s))
        return _distinct(matches)

    def _stretches(self, found: Triplets, query_idx: np.ndarray, posting: np.ndarray, shift: np.ndarray,
                   asset: int, min_duration_s: float) -> list[LandmarkMatch]:
        """Hough-vote a slope/offset line through the hits, then split its inliers into copied stretches."""
        cfg = self.config
        query_t1 = found.t1[query_idx].astype(np.float64)
        asset_t = self._t1[posting].astype(np.float64)
        slope, offset = _hough_line(query_t1, asset_t, cfg)
        inlier = np.abs(query_t1 - slope * asset_t - offset) <= cfg.inlier_frames
        if inlier.any() and np.ptp(asset_t[inlier]) > cfg.sample_rate / cfg.hop:  # refine on >1 s of inliers
            fitted = np.polyfit(asset_t[inlier], query_t1[inlier], 1)
            refined = np.abs(query_t1 - fitted[0] * asset_t - fitted[1]) <= cfg.inlier_frames
            if abs(fitted[0] - 1) <= cfg.max_tempo_change and refined.sum() >= inlier.sum():
                (slope, offset), inlier = fitted, refined
        hit = np.unique(query_idx[inlier])
        hit_anchor = _anchor_key(asset, self._t1[posting[inlier]], self._f1[posting[inlier]])
        hit_t1 = found.t1[query_idx[inlier]]
        if len(hit) < cfg.min_hits:
            return []
        seconds_per_frame = cfg.hop / cfg.sample_rate
        times = found.t1[hit]
        breaks = np.flatnonzero(np.diff(times) > cfg.max_gap_s / seconds_per_frame)
        semitones = float(np.median(shift[inlier])) * 12 / cfg.bins_per_octave
        out = []
        for group in np.split(hit, breaks + 1):
            start, end = int(found.t1[group].min()), int(found.t3[group].max())
            duration_s = (end - start) * seconds_per_frame
            last = int(found.t1[group].max())
            in_group = (hit_t1 >= start) & (hit_t1 <= last)
            span = np.array([np.ceil((start - offset) / slope), np.floor((last - offset) / slope) + 1], np.int64)
            lo, hi = np.searchsorted(self._anchors, _anchor_key(asset, span, np.zeros(2)))
            if duration_s < min_duration_s or len(group) < cfg.min_hits or hi <= lo:
                continue
            found_anchors = np.count_nonzero(np.isin(self._anchors[lo:hi], hit_anchor[in_group]))
            score = _score(found_anchors, int(hi - lo), duration_s, cfg)
            out.append(LandmarkMatch(
                asset_id=self._asset_ids[asset], query_offset_s=round(start * seconds_per_frame, 3),
                asset_offset_s=round((start - offset) / slope * seconds_per_frame, 3),
                duration_s=round(duration_s, 3), score=round(score, 4),
                semitones=round(semitones, 2), tempo=round(1.0 / float(slope), 4), hits=len(group),
            ))
        return out

    def to_bytes(self) -> bytes:
        self._flush()
        buffer = io.BytesIO()
        config = np.array([getattr(self.config, f.name) for f in fields(self.config)], dtype=np.float64)
        np.savez(buffer, keys=self._keys, asset=self._asset, t1=self._t1, f1=self._f1, config=config,
                 asset_ids=np.array(self._asset_ids, dtype=np.str_))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LandmarkIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            values = {f.name: type(f.default)(v) for f, v in zip(fields(LandmarkConfig), stored["config"], strict=True)}
            index = cls(LandmarkConfig(**values))
            index._keys, index._asset, index._t1, index._f1 = (stored[k] for k in ("keys", "asset", "t1", "f1"))
            index._derive_lookups()
            index._asset_ids = [str(a) for a in stored["asset_ids"]]
            index._known = set(index._asset_ids)
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


def _distinct(matches: list[LandmarkMatch]) -> list[LandmarkMatch]:
    """Neighbouring candidate cells find the same stretch again: keep the best-scoring one, best first."""
    kept: list[LandmarkMatch] = []
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
    pitch_span = 2 * int(np.ceil(cfg.max_semitones * cfg.bins_per_octave / 12)) + 3
    delay_bin = np.floor(delay / cfg.delay_bin).astype(np.int64)
    delay_base = int(delay_bin.min()) - 1
    delay_span = int(delay_bin.max()) - delay_base + 2
    cell = (asset * pitch_span + np.rint(shift).astype(np.int64) + pitch_span // 2) * delay_span
    keys, support = _neighbourhood_votes(cell + delay_bin - delay_base, delay_span)
    ranked: list[tuple[int, float, int]] = []
    same_reach = max(1, int(round(cfg.same_alignment / cfg.delay_bin)))
    for i in _strongest_first(support, cfg.min_hits, 16 * cfg.candidates):
        if len(ranked) == cfg.candidates:
            break
        owner, rest = divmod(int(keys[i]), pitch_span * delay_span)
        pitch_bins, bin_index = divmod(rest, delay_span)
        pitch_bins, bin_index = float(pitch_bins - pitch_span // 2), bin_index + delay_base
        if not any(o == owner and abs(p - pitch_bins) <= 1 and abs(d - bin_index) <= same_reach for o, p, d in ranked):
            ranked.append((owner, pitch_bins, bin_index))
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


def _hough_line(query_t: np.ndarray, asset_t: np.ndarray, cfg: LandmarkConfig) -> tuple[float, float]:
    """(slope, offset) of the line ``query_t = slope * asset_t + offset`` through most hits (slope = 1 / tempo).

    Offsets are taken relative to the hits' median asset time, so a grid step in slope moves them by at most
    ``tempo_step`` times the copy's length, not times its position in the asset.
    """
    steps = int(round(cfg.max_tempo_change / cfg.tempo_step))
    slopes = 1.0 + cfg.tempo_step * np.arange(-steps, steps + 1)
    centre = float(np.median(asset_t))
    local = query_t[None, :] - slopes[:, None] * (asset_t[None, :] - centre)  # [slopes, hits]
    bins = np.floor(local / cfg.offset_bin).astype(np.int64)
    base = bins.min()
    width = int(bins.max() - base) + 2
    flat = (np.arange(len(slopes))[:, None] * width + (bins - base)).reshape(-1)
    votes = np.bincount(flat, minlength=len(slopes) * width).reshape(len(slopes), width)
    votes[:, :-1] += votes[:, 1:]  # windows of two bins, so a line on a bin edge is not split
    slope_i, bin_i = np.unravel_index(np.argmax(votes), votes.shape)
    window = (bins[slope_i] >= bin_i + base) & (bins[slope_i] <= bin_i + base + 1)
    local_offset = float(np.median(local[slope_i][window]))
    slope = float(slopes[slope_i])
    return slope, local_offset - slope * centre
