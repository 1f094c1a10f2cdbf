"""``audio.resample`` computes ``scipy.signal.resample_poly`` (its default filter) as matrix products: same
lengths, same values to float32 rounding, for every layout and length, including the edges where the filter
reaches past the signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from soundtrail.audio import _lowpass, _polyphase_kernel, _ratio, resample

RATE_PAIRS = [
    (22_050, 8_000),  # the landmark front end: up 160, one kernel column per phase
    (44_100, 16_000),
    (8_000, 22_050),  # upsampling
    (22_050, 11_025),  # up 1: phases repeated over blocks of outputs to make the product wide
    (16_000, 24_000),
    (44_100, 44_099),  # a kernel too large: resample_poly itself
]


def reference(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    up, down = _ratio(source_rate, target_rate)
    return resample_poly(audio, up, down, axis=-1, window=_lowpass(up, down))


@pytest.mark.parametrize(("source_rate", "target_rate"), RATE_PAIRS)
@pytest.mark.parametrize("length", [1, 2, 441, 1_000, 12_345])
def test_resample_gives_resample_polys_output(source_rate: int, target_rate: int, length: int) -> None:
    audio = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    expected = reference(audio, source_rate, target_rate)
    got = resample(audio, source_rate, target_rate)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * max(1.0, float(np.abs(expected).max())))


def test_resample_keeps_leading_axes_and_empty_signals() -> None:
    audio = np.random.default_rng(0).standard_normal((2, 3, 1_000)).astype(np.float32)
    got = resample(audio, 22_050, 8_000)
    assert got.shape == (2, 3, 363)
    np.testing.assert_allclose(got[1, 2], reference(audio[1, 2], 22_050, 8_000), rtol=0, atol=2e-6)
    assert resample(np.zeros((2, 0), dtype=np.float32), 22_050, 8_000).shape == (2, 0)
    same = resample(audio, 8_000, 8_000)
    assert same.dtype == np.float32 and np.array_equal(same, audio)


def test_narrow_ratios_are_widened_and_odd_ones_left_to_scipy() -> None:
    kernel, _, block = _polyphase_kernel(*_ratio(22_050, 11_025))
    assert block > 1 and kernel.shape[1] == block  # up 1: a block of outputs per product row
    kernel, _, block = _polyphase_kernel(*_ratio(22_050, 8_000))
    assert block == 1 and kernel.shape[1] == 160
    assert _polyphase_kernel(*_ratio(44_100, 44_099))[0] is None
