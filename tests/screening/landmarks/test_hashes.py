"""The landmark front end: its STFT frames and scales as ``scipy.signal.stft`` does, and its peaks sit where
the music's partials are."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import stft

from soundtrail.screening.landmarks.hashes import LandmarkConfig, _spectrogram, spectral_peaks


@pytest.mark.parametrize("samples", [24_000, 24_000 - 77, 2048, 2049])
def test_spectrogram_matches_scipy_stft_framing_and_scale(samples: int) -> None:
    """Same frames (zeros half a window either side, an incomplete last frame completed) and the same scale,
    so ``min_db`` keeps its meaning; lengths that leave the last frame incomplete are included."""
    cfg = LandmarkConfig()
    audio = np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
    _, _, expected = stft(audio, fs=cfg.sample_rate, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop, window="hann")
    got = _spectrogram(audio, cfg)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_peaks_of_two_tones_lie_on_their_log_frequency_bins() -> None:
    """A 440 Hz and a 1,000 Hz tone, 2 s at 16 kHz: every peak is one of them, within 0.15 of a bin (5 cents; the
    frames at either end, half zeros, are the least exact)."""
    cfg = LandmarkConfig()
    rate = 16_000
    t = np.arange(2 * rate) / rate
    audio = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    frames, log_bins = spectral_peaks(audio, rate, cfg)
    expected = cfg.bins_per_octave * np.log2(np.array([440.0, 1000.0]) / cfg.f_min)
    distance = np.abs(log_bins[:, None] - expected[None, :]).min(axis=1)
    assert len(frames) > 0
    assert distance.max() < 0.15
    assert set(np.abs(log_bins[:, None] - expected[None, :]).argmin(axis=1).tolist()) == {0, 1}  # both tones
