"""Landmark hashes that survive pitch shift and tempo change (the Panako idea, in NumPy/SciPy).

Chromaprint compares chroma at fixed times, so a copy played 5 % faster or two semitones higher no longer lines
up. Here audio becomes a sparse set of spectral peaks on a log-frequency axis (``bins_per_octave`` bins per
octave), and each peak is joined with later peaks, its first ``fan_out`` *partners*, into a triplet::

    log f ^        * p3                   hash = (band of f1 // band_bins,   coarse: a shift moves it <= 1 band
          |   * p2                                log(t3 - t1) bin,           tempo moves it <= 1 bin
          | * p1                                  (t2 - t1) / (t3 - t1),      tempo-invariant
          +------------------> t                  f2 - f1, f3 - f1)          pitch-invariant (log axis)

A pitch shift adds a constant to every log frequency and a tempo change scales every time, so ratios of time
differences and differences of log frequencies stay put; the two coarse fields are probed at their neighbouring
values when querying (:func:`probe_hashes`).

A *quad* joins an anchor with three of its first ``quad_fan_out`` partners and hashes two time ratios and three
frequency differences the same way. One more peak makes a hash ~25x rarer by chance among other music, while an
edited copy keeps ~0.1 of its quads against ~0.07 of its triplets, so quads can pick out the few assets worth
verifying among 100,000 (see :mod:`soundtrail.screening.landmarks.candidates`); triplets, denser, then measure the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter
from scipy.signal import get_window

from soundtrail.audio import resample


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
    # sharing a progression outranked some 5 s copies mixed under other music (benchmarks/RESULTS.md)
    verify_reach: int = 312  # the line is sought among hits within 5 s of the cell's delay
    same_alignment: int = 125  # a cell within 2 s of a better one for the same asset and pitch is the same copy
    score_reference_s: float = 5.0  # a stretch this long scores its plain found fraction (see landmarks._score)
    quad_fan_out: int = 5  # a quad joins an anchor with 3 of its first 5 partners: up to 10 quads per anchor
    quad_sample: int = 4  # 1 in 4 quads (chosen by their invariant fields, the same on both sides) is used: the
    # 100,000-track candidate index then holds ~2,000 quads per 30 s track, 4 GB, and a 5 s edited copy still
    # shares ~20 quads with its source
    candidate_assets: int = 32  # assets whose triplets are verified when more are indexed (landmark_candidates)

    @property
    def semitone_bins(self) -> float:
        """Log-frequency bins per semitone."""
        return self.bins_per_octave / 12

    @property
    def max_shift_bins(self) -> float:
        """The largest pitch shift searched, in log-frequency bins: hits further apart are chance."""
        return self.max_semitones * self.semitone_bins


@dataclass(frozen=True)
class Triplets:
    """One recording's triplets: anchor time/frequency, last-peak time, and the hash each was indexed under."""

    t1: np.ndarray  # frames
    t3: np.ndarray
    f1: np.ndarray  # fractional log-frequency bins
    hashes: np.ndarray  # int64, exact (the query side probes neighbours of the coarse fields)
    log_dt: np.ndarray  # unquantised log(t3 - t1) / log_dt_step, for probing


@dataclass(frozen=True)
class Quads:
    """One recording's sampled quads: anchor time/frequency, the hash, and log(t_last - t1) for probing."""

    t1: np.ndarray
    f1: np.ndarray
    hashes: np.ndarray
    log_dt: np.ndarray


@dataclass(frozen=True)
class Landmarks:
    """Both hashings of one recording's peaks: quads choose candidate assets, triplets verify them."""

    triplets: Triplets
    quads: Quads


def spectral_peaks(audio_mono: np.ndarray, sample_rate: int,
                   config: LandmarkConfig) -> tuple[np.ndarray, np.ndarray]:
    """(frame, fractional log-frequency bin) of the strongest local maxima, ``peaks_per_second`` per second."""
    cfg = config
    audio = resample(np.asarray(audio_mono, dtype=np.float32).reshape(-1), sample_rate, cfg.sample_rate)
    if len(audio) < cfg.n_fft:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    power_db = 10.0 * np.log10(np.abs(_spectrogram(audio, cfg)) ** 2 + 1e-10)  # [fft bins, frames]
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


def _spectrogram(audio: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """[fft bins, frames] complex64 STFT, framed as ``scipy.signal.stft`` frames it (zeros half a window either
    side, the last frame completed with zeros) and scaled as it scales (by the window's sum), so peak levels and
    ``min_db`` keep their meaning. Faster than ``scipy.signal.stft`` (measured: ``benchmarks/RESULTS.md``): one
    float32 real FFT over a strided view of the frames."""
    window = get_window("hann", cfg.n_fft).astype(np.float32)
    half = cfg.n_fft // 2
    incomplete = -(len(audio) + 2 * half - cfg.n_fft) % cfg.hop
    frames = sliding_window_view(np.pad(audio, (half, half + incomplete)), cfg.n_fft)[::cfg.hop]
    return scipy.fft.rfft(frames * (window / window.sum()), axis=-1).T


def _refine_hz(power_db: np.ndarray, fft_bin: np.ndarray, frames: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """Frequency of each peak by a parabola through the strongest FFT bin near it and its two neighbours."""
    candidates = np.clip(fft_bin[:, None] + np.array([-1, 0, 1]), 1, power_db.shape[0] - 2)
    best = candidates[np.arange(len(fft_bin)), np.argmax(power_db[candidates, frames[:, None]], axis=1)]
    left, mid, right = power_db[best - 1, frames], power_db[best, frames], power_db[best + 1, frames]
    denominator = left - 2 * mid + right
    shift = np.where(denominator < 0, 0.5 * (left - right) / np.where(denominator < 0, denominator, -1.0), 0.0)
    return (best + np.clip(shift, -0.5, 0.5)) * cfg.sample_rate / cfg.n_fft


def landmarks(audio_mono: np.ndarray, sample_rate: int, config: LandmarkConfig) -> Landmarks:
    """The recording's triplets and sampled quads, from one pass of peak picking."""
    t, f = spectral_peaks(audio_mono, sample_rate, config)
    partner, valid = _first_partners(t, f, config, max(config.fan_out, config.quad_fan_out))
    return Landmarks(_triplets(t, f, partner[:, :config.fan_out], valid[:, :config.fan_out], config),
                     _quads(t, f, partner[:, :config.quad_fan_out], valid[:, :config.quad_fan_out], config))


def _first_partners(t: np.ndarray, f: np.ndarray, cfg: LandmarkConfig, count: int) -> tuple[np.ndarray, np.ndarray]:
    """([peaks, count] partner indices, [peaks, count] valid): each peak's first ``count`` later peaks that lie
    ``min_dt``..``max_dt`` frames after it and within ``max_df`` bins, in time order."""
    lo = np.searchsorted(t, t + cfg.min_dt, side="left")
    hi = np.searchsorted(t, t + cfg.max_dt, side="right")
    width = int(max(1, (hi - lo).max(initial=1)))
    partner = lo[:, None] + np.arange(width)[None, :]
    valid = partner < hi[:, None]
    partner = np.minimum(partner, len(t) - 1)
    valid &= np.abs(f[partner] - f[:, None]) <= cfg.max_df
    first = np.argsort(~valid, axis=1, kind="stable")[:, :count]
    return np.take_along_axis(partner, first, axis=1), np.take_along_axis(valid, first, axis=1)


def _combinations(partner: np.ndarray, valid: np.ndarray, t: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """(anchor, partner_1, ..., partner_size) index arrays for every ``size``-subset of each anchor's partners
    that are all valid and strictly later one after another."""
    combos = np.array(list(combinations(range(partner.shape[1]), size)), dtype=np.int64).reshape(-1, size)
    anchor = np.repeat(np.arange(len(partner)), len(combos))
    chosen = [partner[:, combos[:, i]].reshape(-1) for i in range(size)]
    ok = np.logical_and.reduce([valid[:, combos[:, i]].reshape(-1) for i in range(size)])
    for earlier, later in zip(chosen, chosen[1:], strict=False):
        ok &= t[later] > t[earlier]
    return (anchor[ok], *(p[ok] for p in chosen))


def _triplets(t: np.ndarray, f: np.ndarray, partner: np.ndarray, valid: np.ndarray, cfg: LandmarkConfig) -> Triplets:
    """Every anchor peak joined with pairs of its first ``fan_out`` partners, hashed."""
    anchor, p2, p3 = _combinations(partner, valid, t, 2)
    dt13 = (t[p3] - t[anchor]).astype(np.float64)
    log_dt = np.log(dt13) / cfg.log_dt_step
    span = 2 * cfg.max_df + 1
    fine = (_ratio(t, p2, anchor, dt13, cfg) * span + _df(f, p2, anchor, cfg)) * span + _df(f, p3, anchor, cfg)
    return Triplets(t[anchor].astype(np.int32), t[p3].astype(np.int32), f[anchor].astype(np.float32),
                    _hash(cfg, f[anchor], log_dt, fine, triplet_fine_values(cfg)), log_dt)


def _quads(t: np.ndarray, f: np.ndarray, partner: np.ndarray, valid: np.ndarray, cfg: LandmarkConfig) -> Quads:
    """Anchors joined with 3 of their first ``quad_fan_out`` partners (c, d, b in time order), hashed by
    (t_c - t_a) / (t_b - t_a), (t_d - t_a) / (t_b - t_a) and the three log-frequency differences to the anchor;
    only the ``1 / quad_sample`` whose invariant fields hash to 0 are kept."""
    anchor, c, d, b = _combinations(partner, valid, t, 3)
    dt = (t[b] - t[anchor]).astype(np.float64)
    span = 2 * cfg.max_df + 1
    fine = _ratio(t, c, anchor, dt, cfg) * cfg.ratio_levels + _ratio(t, d, anchor, dt, cfg)
    for point in (b, c, d):
        fine = fine * span + _df(f, point, anchor, cfg)
    keep = top_hash_bits(fine, 24) % cfg.quad_sample == 0  # invariant fields only: a kept quad's copy is kept
    anchor, fine, log_dt = anchor[keep], fine[keep], np.log(dt[keep]) / cfg.log_dt_step
    return Quads(t[anchor].astype(np.int32), f[anchor].astype(np.float32),
                 _hash(cfg, f[anchor], log_dt, fine, quad_fine_values(cfg)), log_dt)


def _ratio(t: np.ndarray, point: np.ndarray, anchor: np.ndarray, span: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """Where ``point`` falls between the anchor and the last peak, ``span`` frames later: 0 .. ratio_levels - 1."""
    return np.minimum(((t[point] - t[anchor]) / span * cfg.ratio_levels).astype(np.int64), cfg.ratio_levels - 1)


def _df(f: np.ndarray, point: np.ndarray, anchor: np.ndarray, cfg: LandmarkConfig) -> np.ndarray:
    """Log-frequency difference to the anchor in whole bins, offset to be non-negative (0 .. 2 * max_df)."""
    return np.rint(f[point] - f[anchor]).astype(np.int64) + cfg.max_df


def top_hash_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """The top ``bits`` bits of a multiplicative (Fibonacci) hash of non-negative integers: well mixed, so they
    pick a pseudo-random sample of quads, or a bucket of a counting table, in one multiply."""
    mixed = values.astype(np.uint64)  # a copy, then worked in place (callers hash millions of values)
    mixed *= np.uint64(0x9E3779B97F4A7C15)
    mixed >>= np.uint64(64 - bits)
    return mixed.view(np.int64)  # < 2 ** 63: the same values


_BAND_OFFSET = 4  # hash fields must not go negative: the band below band 0 is probed too
_LOG_DT_VALUES = 64  # room for the log(t3 - t1) field


def triplet_fine_values(cfg: LandmarkConfig) -> int:
    """Distinct values of a triplet's invariant fields (ratio, two frequency differences)."""
    return cfg.ratio_levels * (2 * cfg.max_df + 1) ** 2


def quad_fine_values(cfg: LandmarkConfig) -> int:
    """Distinct values of a quad's invariant fields (two ratios, three frequency differences)."""
    return cfg.ratio_levels ** 2 * (2 * cfg.max_df + 1) ** 3


def _hash(cfg: LandmarkConfig, f1: np.ndarray, log_dt: np.ndarray, fine: np.ndarray, fine_values: int) -> np.ndarray:
    """(anchor band, log-dt bin) above the invariant fields: ``coarse * fine_values + fine``."""
    band = np.floor(f1 / cfg.band_bins).astype(np.int64)
    coarse = (band + _BAND_OFFSET) * _LOG_DT_VALUES + np.floor(log_dt).astype(np.int64)
    return coarse * fine_values + fine


def probe_hashes(cfg: LandmarkConfig, found: Triplets | Quads, fine_values: int) -> tuple[np.ndarray, np.ndarray]:
    """(query hash index, hash) for each hash itself and its coarse fields' neighbours, sorted by hash (binary
    searches with sorted needles, or into sorted probes, walk memory in order).

    A neighbouring band is probed only where the searched pitch shifts reach it from the anchor's frequency:
    the query drops hits further away than ``max_semitones``, so probing it would only fetch hits to discard.
    """
    fine = found.hashes % fine_values
    band = found.hashes // (_LOG_DT_VALUES * fine_values) - _BAND_OFFSET
    into_band = found.f1 - band * cfg.band_bins
    reach = cfg.max_shift_bins + 1e-3  # + float32 rounding of f1
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
            probes.append(key * fine_values + fine[use])
            owners.append(index[use])
    # Sorted as one int64 per probe, hash above owner: a plain sort, ~2x faster than an argsort and two gathers,
    # and equal hashes come out in owner order. Hashes stay far below the bits left (< 2 ** 36 with the defaults).
    owner_bits = max(1, len(fine)).bit_length()
    probe = np.concatenate(probes)
    if len(probe) and int(probe.max()) >> (63 - owner_bits):
        raise ValueError(f"landmark hashes up to {int(probe.max())} leave no room for {len(fine)} hash indices")
    packed = probe << owner_bits
    packed |= np.concatenate(owners)
    packed.sort()
    return packed & ((1 << owner_bits) - 1), packed >> owner_bits
