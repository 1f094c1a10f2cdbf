"""Synthetic music and the edits a copier makes (pitch shift, tempo change), for the screening tests and benchmark.

The music is deliberately corpus-like: a few harmonic voices walking a major scale over a bass, note lengths on a
beat grid, a little noise, so different seeds share key, timbre and rhythm, and only the melodies tell them apart.
The transforms use only SciPy: a phase vocoder changes tempo without changing pitch, and a phase-vocoder stretch
followed by resampling changes pitch without changing tempo.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import istft, resample_poly, stft

SAMPLE_RATE = 22_050
_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])


def synth_music(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 music: three decaying harmonic voices on random scale walks, peak 0.8."""
    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    out = np.zeros(total, dtype=np.float64)
    beat = float(rng.choice([0.25, 0.3, 0.375, 0.5]))
    root = int(rng.integers(45, 57))
    notes = int(seconds / beat) + 1
    for voice, (octave, length) in enumerate(((-1, 4), (0, 1), (1, 2))):
        degrees = np.cumsum(rng.integers(-2, 3, notes)) % 14
        for k in range(0, notes, length):
            start = int(k * beat * sample_rate)
            if start >= total or rng.random() < 0.15:
                continue
            stop = min(total, int((k + length) * beat * sample_rate))
            midi = root + 12 * octave + _SCALE[degrees[k] % 7] + 12 * (degrees[k] // 7)
            freq = 440.0 * 2.0 ** ((midi - 69) / 12)
            t = np.arange(stop - start) / sample_rate
            envelope = np.exp(-t * (2.0 + voice)) * np.minimum(1.0, t / 0.01)
            for harmonic in range(1, 6):
                if freq * harmonic < sample_rate / 2:
                    out[start:stop] += envelope * np.sin(2 * np.pi * freq * harmonic * t) / harmonic ** 1.5
    out += 0.01 * rng.standard_normal(total)
    return (0.8 * out / np.max(np.abs(out))).astype(np.float32)


def time_stretch(audio: np.ndarray, rate: float, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Phase vocoder: play ``rate`` times faster (``rate > 1`` shortens) at the same pitch."""
    _, _, spec = stft(audio, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    steps = np.arange(0.0, spec.shape[1] - 1, rate)
    left = steps.astype(int)
    frac = (steps - left)[None, :]
    magnitude = (1 - frac) * np.abs(spec[:, left]) + frac * np.abs(spec[:, left + 1])
    expected = 2 * np.pi * hop * np.arange(spec.shape[0]) / n_fft
    advance = np.angle(spec[:, left + 1]) - np.angle(spec[:, left]) - expected[:, None]
    advance = expected[:, None] + (advance + np.pi) % (2 * np.pi) - np.pi
    phase = np.angle(spec[:, :1]) + np.cumsum(advance, axis=1) - advance[:, :1]
    _, out = istft(magnitude * np.exp(1j * phase), nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    length = int(round(len(audio) / rate))
    return np.pad(out, (0, max(0, length - len(out))))[:length].astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration: stretch longer, then resample back to length."""
    factor = Fraction(2.0 ** (semitones / 12)).limit_denominator(200)
    stretched = time_stretch(audio, 1 / float(factor))
    shifted = resample_poly(stretched, factor.denominator, factor.numerator)
    out = np.zeros_like(audio)
    n = min(len(out), len(shifted))
    out[:n] = shifted[:n]
    return out


def _dominant_hz(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * sample_rate / len(audio))


def test_pitch_shift_moves_a_tone_by_the_interval_and_keeps_length() -> None:
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    shifted = pitch_shift(tone, 2.0)
    assert len(shifted) == len(tone)
    assert abs(_dominant_hz(shifted) / 440.0 - 2 ** (2 / 12)) < 0.01


def test_time_stretch_changes_length_not_pitch() -> None:
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    faster = time_stretch(tone, 1.05)
    assert abs(len(faster) - len(tone) / 1.05) <= 1
    assert abs(_dominant_hz(faster) - 440.0) < 3.0


def test_music_differs_by_seed_and_repeats_by_seed() -> None:
    a, b = synth_music(3.0, 1), synth_music(3.0, 2)
    assert np.array_equal(a, synth_music(3.0, 1))
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.2
