"""Keyed spread-spectrum watermark carrying a 32-bit payload, with synchronisation and a p-value.

Why this method
---------------
The release gate needs a blind, keyed mark that survives MP3 at 128 kbps, 16 kHz resampling, noise, gain and
cropping, runs far faster than real time on one CPU core (every released output is marked), and has a
false-positive rate that can be *bounded*, not only measured. Learned marks (AudioSeal: mean bit accuracy
0.96 over its edits, 0.95 on music; WavMark: 32 bits per second at about 36 dB SNR) need GPU training on a
large corpus and give no analytic false-positive bound. audiowmark's patchwork scheme (pseudo-randomly
chosen FFT bands scaled up or down by about 1 %, a convolutional code, a sync search) is the proven classical
design, but it spends about 50 s of audio per 128-bit block. We keep its ingredients and re-budget them for
clips of a few seconds: 32 bits plus a CRC-16 instead of 128 bits, a block that repeats every 2 s so any 5 s
excerpt holds every tile of it twice, small tiles (16 ms x 62.5 Hz) whose host energy is well predicted by
their neighbours in time, and a mark that is relatively stronger in the quieter bands of each frame, where it
costs little of the 30 dB signal-to-watermark budget. ``benchmarks/release_watermark.py`` measures what this
achieves (detection and bit accuracy after each edit, false positives, the ratio, speed on one thread); its
figures are in ``benchmarks/RESULTS.md``.

Layout (working rate 16 kHz, STFT of 512 samples, hop 256 = one tile in time)::

    250 Hz .. 7.5 kHz: 116 bands of 2 bins (62.5 Hz)
      ^  +----+----+----+----+---- ... ----+     dj  a tile of coded bit j (162 coded bits, 91 tiles
      |  | d5 | d7 | d90| P  |        d3  |         each, scattered by the key): keyed sign times the bit
      |  | d12| d0 | d41| d0 |        d77 |     P   one of the 106 tiles left over: keyed sign only
      |  +----+----+----+----+---- ... ----+
      +--------------------------------------> time: 128 frames = 2.048 s, then the block repeats

Each tile scales the host's STFT in its band by ``1 + x * min(0.5, s * w)``: ``x = +-1`` is the tile's sign,
``w = min(8, (band power / frame mean) ** -0.75)`` favours the quieter bands of the frame, and the strength
``s`` is solved so that the signal-to-watermark ratio is exactly 30.3 dB. The mark is an additive signal
shaped like the host's own spectrum: none in silence or outside the band, which MP3 and a 16 kHz round trip
both keep.

Detection takes log band energies on a grid four times finer than the hop, floored at the band's noise level
(a low quantile over time) and 17 dB under the frame mean; removes each frame's mean and each tile's
neighbours in time (the host's envelope); clips the residuals hard (0.7 robust standard deviations: on
sparse hosts a few onsets and partials would otherwise carry all the weight); weights each tile by how far
its band stands over twice its noise floor and down-weights onsets; and folds the clip onto the 2 s block.
One FFT correlation over time gives, at all ``4 * 128 = 512`` alignments at once, the soft value of every
coded bit; a Viterbi decoder finds the best codeword at each alignment, and its correlation with the clip,
normalised by the clip's feature energy, is the alignment's score. The codeword itself synchronises: no tiles
are spent on a separate sync pattern, so every tile carries data, which the sparsest hosts (speech under noise)
need most. The words of the best 8 alignments are CRC-checked; when none holds, each of them is list-decoded
8 deep (parallel list Viterbi) and the best CRC-valid word is taken: on weak marks the maximum-likelihood word
can be wrong with the sent word right behind it.

The p-value bounds the chance that audio *without this key's mark* yields a CRC-valid word scoring as well,
whatever the audio: for one alignment and one codeword the score is a normalised sum of the key's independent
random signs, so ``P(score >= t) <= exp(-t^2/2)`` (Hoeffding), and a union over the 512 alignments and the
``2^32`` codewords whose CRC holds gives ``p = 512 * 2^32 * exp(-score^2 / 2)``; a clip is marked when
``p <= 1e-6``, i.e. score >= 9.19 (the scores unmarked audio reaches, just under that, are in
``benchmarks/RESULTS.md``).
The Hoeffding bound, not a Gaussian tail, is used because on sparse hosts the features are far from normal.
Scoring the whole codeword instead of a pilot with the CRC as a 2^-16 factor costs 2^32 in the union but
uses every tile, so a sparse host whose payload decodes right is not lost to a pilot score short of its own
threshold.

Known limits: the budget is fixed by the 30 dB ratio, so on very sparse hosts (a bare three-partial melody)
and speech-like audio with pauses the mark lives in few tiles, and these are the clips closest to the
threshold. A quiet clip that is mostly pauses, under 20 dB of noise, can hold too little mark to score 9.19
even with the sent word known: no decoder can recover it, only more mark energy could, which the 30 dB budget
does not allow (how often, in a stress run: ``benchmarks/RESULTS.md``). Informed embedding (extra gain where
the host's own residual opposes the tile's sign) does not help: the score is normalised by the host's feature
energy, which the mark cannot reduce, so cancelling the host's correlation with the key buys little. Pitch
shift and time stretch move the tiles off the key's grid and are left out of the benchmark; so are excerpts
under 4.5 s.
The detector's FFT correlation is a few small complex matrix products, which multi-threaded OpenBLAS on a busy
machine runs several times slower than one pinned thread (the benchmark pins one).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soundtrail.audio import resample
from soundtrail.release import watermark_code as code

PAYLOAD_HEX_CHARS = code.PAYLOAD_BITS // 4
# The name content credentials give this mark (a C2PA soft-binding ``alg``: reverse-domain and versioned; it is
# not on C2PA's soft-binding algorithm list). Change the version when marks stop being readable by older code.
ALGORITHM = "org.soundtrail.watermark.stft-tiles.1"


@dataclass(frozen=True)
class WatermarkConfig:
    """Key, band, strength and block layout. Embedder and detector must use the same values."""

    key: str = "soundtrail-release"
    working_rate: int = 16_000
    n_fft: int = 512  # the embedding hop, and a tile's length, is n_fft // 2
    band_hz: tuple[float, float] = (250.0, 7500.0)
    band_bins: int = 2  # FFT bins per band (62.5 Hz at 16 kHz)
    period_tiles: int = 128  # hops per repeating block (2.048 s)
    pilot_fraction: float = 0.0  # share of tiles reserved for a key-only pattern (beyond the tiles left over)
    target_swr_db: float = 30.3  # signal-to-watermark ratio of the marked output
    shaping: float = 0.75  # tile gain = (band power / frame mean) ** -shaping ...
    max_boost: float = 8.0  # ... capped here
    max_change: float = 0.5  # cap on any band's relative amplitude change
    sync_subdivisions: int = 4  # detector hop = embedding hop / this
    candidates: int = 8  # best alignments whose words are CRC-checked ...
    list_size: int = 8  # ... and, when none holds, list-decoded this deep
    false_positive_rate: float = 1e-6  # per clip, bounded analytically
    floor_db: float = -17.0  # detector floor relative to the frame's mean band power
    noise_quantile: float = 0.1  # quantile of a band's power over time taken as its noise floor
    noise_excess: float = 2.0  # multiples of that floor taken off a band's level before it is weighed ...
    noise_margin_db: float = 12.0  # ... and the excess at which it weighs half
    clip_sigmas: float = 0.7  # detector features are clipped at this many robust standard deviations
    change_sigmas: float = 2.0  # tiles whose neighbours differ by more are down-weighted (onsets)

    @property
    def hop(self) -> int:
        return self.n_fft // 2

    @property
    def alignments(self) -> int:
        """Number of alignments the detector tries: the independent trials its p-value accounts for."""
        return self.sync_subdivisions * self.period_tiles


@dataclass(frozen=True)
class Detection:
    """What the detector found in one clip.

    ``payload`` is set only when the decoded word passes its CRC and ``p_value`` clears the threshold;
    ``raw_payload`` is the decoded word of the best alignment either way. ``bit_confidence`` is the share of
    the 162 coded bits whose soft value agrees with the re-encoded word (about 0.6 on unmarked audio, 1.0 on
    a clean copy); ``score`` is the normalised correlation of the whole block (pilot and decoded codeword)
    at that alignment: about 8.3 on unmarked audio, 9.19 at the detection threshold.
    """

    detected: bool
    payload: int | None
    p_value: float
    raw_payload: int
    bit_confidence: float
    score: float

    def to_json(self) -> dict:
        """The CLI's detect record: ``{"detected", "payload" (8 hex digits or null), "p_value"}``."""
        return {
            "detected": self.detected,
            "payload": None if self.payload is None else payload_to_hex(self.payload),
            "p_value": self.p_value,
        }


def payload_to_hex(payload: int) -> str:
    if not 0 <= payload < 1 << code.PAYLOAD_BITS:
        raise ValueError(f"payload must fit in {code.PAYLOAD_BITS} bits, got {payload}")
    return f"{payload:0{PAYLOAD_HEX_CHARS}x}"


def hex_to_payload(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x")
    if len(cleaned) != PAYLOAD_HEX_CHARS or any(ch not in "0123456789abcdef" for ch in cleaned):
        raise ValueError(f"payload must be {PAYLOAD_HEX_CHARS} hex digits, got {text!r}")
    return int(cleaned, 16)


@dataclass(frozen=True)
class _Layout:
    """The keyed pattern of one block as ``[period_tiles, bands]`` arrays, and where the bands lie."""

    bins: slice  # FFT bins covered by the bands
    pilot: np.ndarray  # +-1 on pilot tiles, 0 elsewhere
    data_sign: np.ndarray  # +-1 on data tiles, 0 elsewhere
    data_bit: np.ndarray  # coded-bit index of each tile (meaningful where data_sign != 0)
    patterns: np.ndarray  # FFT over time of [pilot, the signed tiles of coded bit 0, 1, ...]: [freqs, bands, 1 + bits]

    @property
    def bands(self) -> int:
        return self.pilot.shape[1]


@lru_cache(maxsize=8)
def _layout(config: WatermarkConfig) -> _Layout:
    bin_hz = config.working_rate / config.n_fft
    first = math.ceil(config.band_hz[0] / bin_hz)
    bands = (math.floor(config.band_hz[1] / bin_hz) - first) // config.band_bins
    tiles = config.period_tiles * bands
    per_bit = (tiles - round(config.pilot_fraction * tiles)) // code.CODED_BITS
    if per_bit < 1:
        raise ValueError("block too small for the coded payload: raise period_tiles or widen the band")
    seed = int.from_bytes(hashlib.sha256(config.key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    order = rng.permutation(tiles)  # the first per_bit * CODED_BITS carry data, the rest are pilot
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=tiles)
    data_tiles = order[: per_bit * code.CODED_BITS]
    data_sign = np.zeros(tiles, dtype=np.float32)
    data_sign[data_tiles] = signs[data_tiles]
    data_bit = np.zeros(tiles, dtype=np.int64)
    data_bit[data_tiles] = np.arange(data_tiles.size) % code.CODED_BITS
    pilot = np.where(data_sign == 0, signs, 0).astype(np.float32)
    shape = (config.period_tiles, bands)
    per_bit_sign = np.zeros((1 + code.CODED_BITS, tiles), dtype=np.float32)
    per_bit_sign[0] = pilot
    per_bit_sign[1 + data_bit[data_tiles], data_tiles] = data_sign[data_tiles]
    patterns = np.fft.rfft(per_bit_sign.reshape(-1, *shape), axis=1).transpose(1, 2, 0).astype(np.complex64)
    return _Layout(
        bins=slice(first, first + bands * config.band_bins),
        pilot=pilot.reshape(shape),
        data_sign=data_sign.reshape(shape),
        data_bit=data_bit.reshape(shape),
        patterns=np.ascontiguousarray(patterns),
    )


# ---------------------------------------------------------------------------------------------------- embed


def embed(audio: np.ndarray, sample_rate: int, payload: int, config: WatermarkConfig | None = None) -> np.ndarray:
    """Return ``audio`` (``[C, T]`` or ``[T]``, any rate) with ``payload`` embedded: same shape, float32.

    The signal-to-watermark ratio of the result is ``config.target_swr_db``, or higher when the host has so
    little energy in the band that every tile is already at ``max_change``. Samples are not clipped to [-1, 1].
    """
    config = config or WatermarkConfig()
    host = np.asarray(audio, dtype=np.float32)
    channels = np.atleast_2d(host)
    layout = _layout(config)
    pattern = layout.pilot + layout.data_sign * code.encode(payload)[layout.data_bit]  # [period_tiles, bands]
    mark_to_host = 10.0 ** (-config.target_swr_db / 10.0)
    working = resample(channels, sample_rate, config.working_rate)
    mark, saturated = _mark(working, pattern, layout, config, mark_to_host)
    mark = _fit_length(resample(mark, config.working_rate, sample_rate), channels.shape[-1])
    mark_power = float(np.mean(np.square(mark, dtype=np.float64)))
    if mark_power == 0.0:
        return host.copy()
    exact = math.sqrt(float(np.mean(np.square(channels, dtype=np.float64))) * mark_to_host / mark_power)
    return (channels + np.float32(min(exact, 1.0) if saturated else exact) * mark).reshape(host.shape)


def _mark(audio: np.ndarray, pattern: np.ndarray, layout: _Layout, config: WatermarkConfig,
          mark_to_host: float) -> tuple[np.ndarray, bool]:
    """The mark at the working rate: iSTFT of the host's in-band STFT times the tile gains.

    Tile gain = sign * min(max_change, s * boost); the strength ``s`` is solved on the STFT energies so that
    the mark has ``mark_to_host`` of the host's energy. Also returns whether every tile hit ``max_change``.
    """
    hop = config.hop
    window = np.sqrt(np.hanning(config.n_fft + 1)[:-1]).astype(np.float32)  # sqrt-Hann: exact 50 % OLA
    length = audio.shape[-1]
    n_frames = -(-length // hop) + 1
    padded = np.zeros((audio.shape[0], (n_frames + 1) * hop), dtype=np.float32)
    padded[:, hop:hop + length] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)[:, ::hop]
    spectrum = np.fft.rfft(frames * window, axis=-1)
    power = np.square(np.abs(spectrum)).sum(axis=0)  # [frames, bins], channels summed
    band_power = power[:, layout.bins].reshape(n_frames, layout.bands, -1).sum(axis=-1)
    relative = band_power / (band_power.mean(axis=1, keepdims=True) + 1e-30)
    boost = np.minimum(config.max_boost, np.maximum(relative, 1e-30) ** -config.shaping)
    total = 2.0 * power.sum() - power[:, 0].sum() - power[:, -1].sum()  # both halves of the spectrum
    strength, saturated = _solve_strength(2.0 * band_power, boost, config.max_change, mark_to_host * total)
    gain = np.minimum(config.max_change, strength * boost)
    tile_gain = pattern[np.arange(n_frames) % config.period_tiles] * gain  # [frames, bands]
    shaped = np.zeros_like(spectrum)
    shaped[..., layout.bins] = spectrum[..., layout.bins] * np.repeat(tile_gain, config.band_bins, axis=1)
    marked = np.fft.irfft(shaped, n=config.n_fft, axis=-1).astype(np.float32) * window
    out = np.zeros((audio.shape[0], n_frames + 1, hop), dtype=np.float32)
    out[:, :-1] += marked[..., :hop]
    out[:, 1:] += marked[..., hop:]
    return out.reshape(audio.shape[0], -1)[:, hop:hop + length], saturated


def _solve_strength(energy: np.ndarray, boost: np.ndarray, cap: float, target: float) -> tuple[float, bool]:
    """Smallest ``s`` with ``sum(energy * min(cap, s * boost)^2) >= target`` (bisection on a log scale)."""
    useful = (energy > 0) & (boost > 0)
    if target <= 0.0 or not np.any(useful):
        return 0.0, False
    high = cap / float(boost[useful].min())  # every useful tile is capped from here on
    if float(np.sum(energy[useful])) * cap**2 <= target:
        return high, True
    low = 1e-9 * high
    for _ in range(60):
        middle = math.sqrt(low * high)
        if float(np.sum(energy * np.minimum(cap, middle * boost) ** 2)) < target:
            low = middle
        else:
            high = middle
    return high, False


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])


# --------------------------------------------------------------------------------------------------- detect


def detect(audio: np.ndarray, sample_rate: int, config: WatermarkConfig | None = None) -> Detection:
    """Look for the watermark in ``audio`` (``[C, T]`` or ``[T]``, any rate, any excerpt of a marked file)."""
    config = config or WatermarkConfig()
    layout = _layout(config)
    signal = resample(np.atleast_2d(np.asarray(audio, dtype=np.float32)).mean(axis=0), sample_rate,
                      config.working_rate)
    folded = _folded_tiles(signal, layout, config)  # [sync_subdivisions, period_tiles, bands]
    if folded is None:
        return Detection(False, None, 1.0, 0, 0.0, 0.0)
    correlation = _correlations(folded, layout)  # [alignments, 1 + CODED_BITS]: pilot, then each coded bit
    messages, fit = code.viterbi(correlation[:, 1:])
    norm = np.sqrt(np.square(folded).sum(axis=(1, 2)))  # every tile of the block is a pilot or a data tile
    norm = np.repeat(np.maximum(norm, 1e-30), config.period_tiles)
    score = (correlation[:, 0] + fit) / norm
    best = np.argsort(score)[::-1][: config.candidates]
    found = _best_valid_word(messages[best], score[best])
    if found is None:  # no CRC-valid word at the best alignments: look down each one's list of near rivals
        lists, list_fit = code.list_viterbi(correlation[best, 1:], config.list_size)
        list_score = (correlation[best, :1] + list_fit) / norm[best, None]
        found = _best_valid_word(lists.reshape(-1, code.MESSAGE_BITS), list_score.reshape(-1))
        if found is not None:
            found = (found[0] // config.list_size, *found[1:])
    rank, value, word_score = found if found is not None else (0, code.unpack(messages[best[0]])[0], None)
    alignment = int(best[rank])
    p_value = 1.0 if word_score is None else _p_value(word_score, config)
    detected = p_value <= config.false_positive_rate
    return Detection(
        detected=detected,
        payload=value if detected else None,
        p_value=p_value,
        raw_payload=value,
        bit_confidence=float(np.mean(np.sign(correlation[alignment, 1:]) == code.encode(value))),
        score=float(score[alignment]) if word_score is None else word_score,
    )


def _best_valid_word(messages: np.ndarray, scores: np.ndarray) -> tuple[int, int, float] | None:
    """``(index, payload, score)`` of the highest-scoring message whose CRC holds, or None."""
    for index in np.argsort(scores)[::-1]:
        if not np.isfinite(scores[index]):
            break
        payload, crc_ok = code.unpack(messages[index])
        if crc_ok:
            return int(index), payload, float(scores[index])
    return None


def _p_value(score: float, config: WatermarkConfig) -> float:
    """Bound on the chance that audio without the mark has a CRC-valid word scoring this well at any alignment.

    For one alignment and one codeword the score is a normalised sum of the key's independent random signs,
    so ``P(score >= t) <= exp(-t^2 / 2)`` (Hoeffding); the union runs over the detector's alignments and the
    ``2^32`` codewords whose CRC holds.
    """
    tail = math.exp(-0.5 * score * score) if score > 0 else 1.0
    return min(1.0, config.alignments * 2.0**code.PAYLOAD_BITS * tail)


def _folded_tiles(signal: np.ndarray, layout: _Layout, config: WatermarkConfig) -> np.ndarray | None:
    """Envelope-free tile features folded onto one block, for each sub-hop alignment.

    Returns ``[sync_subdivisions, period_tiles, bands]``, or None when the clip is shorter than 3 tiles.
    """
    step = config.hop // config.sync_subdivisions
    frames_needed = 3 * config.sync_subdivisions + config.n_fft // step
    if signal.size < frames_needed * step:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(signal, config.n_fft)[::step]
    window = np.hanning(config.n_fft + 1)[:-1].astype(np.float32)
    spectrum = np.fft.rfft(frames * window, axis=-1)[:, layout.bins]
    power = np.square(np.abs(spectrum)).reshape(frames.shape[0], layout.bands, -1).sum(axis=-1)
    noise = np.quantile(power[::config.sync_subdivisions], config.noise_quantile, axis=0, keepdims=True)
    frame_floor = 10.0 ** (config.floor_db / 10.0) * power.mean(axis=1, keepdims=True)
    floor = np.maximum(noise, frame_floor) + 1e-20
    log_power = np.log(power + floor)
    # how far the band stands over its noise floor, averaged over +-1 tile so the weight does not follow the
    # tile's own fluctuation: tiles of bare noise (added noise, silence) carry no mark and get no weight (the
    # floor is a low quantile, so bare noise averages about twice over it: that much is taken off first)
    level = _moving_mean(power, config.sync_subdivisions)
    margin = 10.0 ** (config.noise_margin_db / 10.0)
    excess = np.maximum(level - config.noise_excess * noise, 0.0)
    reliability = excess / (excess + np.maximum(margin * noise, frame_floor) + 1e-20)
    log_sum = np.concatenate([np.zeros((1, layout.bands)), np.cumsum(log_power, axis=0)])
    rel_sum = np.concatenate([np.zeros((1, layout.bands)), np.cumsum(reliability, axis=0)])
    tile = config.sync_subdivisions  # fine frames per tile
    out = np.zeros((config.sync_subdivisions, config.period_tiles, layout.bands))
    for sub in range(config.sync_subdivisions):
        count = (frames.shape[0] - sub) // tile
        starts = sub + tile * np.arange(count)
        tiles = (log_sum[starts + tile] - log_sum[starts]) / tile  # [count, bands]
        tiles -= tiles.mean(axis=1, keepdims=True)  # the frame's level
        padded = np.pad(tiles, ((1, 1), (0, 0)), mode="edge")
        residual = tiles - 0.5 * (padded[:-2] + padded[2:])  # the band's envelope over time
        weight = (rel_sum[starts + tile] - rel_sum[starts]) / tile
        active = np.abs(residual[weight > 0.5 * np.quantile(weight, 0.99)])
        spread = float(np.median(active)) if active.size else 0.0
        scale = config.clip_sigmas * 1.4826 * spread + 1e-12
        residual = np.clip(residual, -scale, scale) * weight
        change = np.square(padded[2:] - padded[:-2]) / (config.change_sigmas * scale / config.clip_sigmas) ** 2
        residual = residual / (1.0 + change)  # onsets and note changes: the envelope is no guide there
        np.add.at(out[sub], np.arange(count) % config.period_tiles, residual)
    return out


def _moving_mean(values: np.ndarray, half: int) -> np.ndarray:
    """Mean over ``[t - half, t + half]`` along axis 0, shorter at the edges."""
    total = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    index = np.arange(values.shape[0])
    low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, values.shape[0])
    return (total[high] - total[low]) / (high - low)[:, None]


def _correlations(folded: np.ndarray, layout: _Layout) -> np.ndarray:
    """Correlation of the clip with the pilot and with each coded bit's tiles, at every alignment.

    Returns ``[alignments, 1 + CODED_BITS]``, alignment = ``sub * period_tiles + shift``; at shift ``c`` the
    clip's folded tile ``u`` is block tile ``(u + c) % period_tiles``. One circular correlation over time by
    FFT, the bands summed by a matrix product.
    """
    subs, period, _ = folded.shape
    spectrum = np.conj(np.fft.rfft(folded, axis=1)).transpose(1, 0, 2)  # [freqs, subs, bands]
    product = np.matmul(spectrum.astype(np.complex64), layout.patterns)  # [freqs, subs, 1 + CODED_BITS]
    return np.fft.irfft(product, n=period, axis=0).transpose(1, 0, 2).reshape(subs * period, -1)
