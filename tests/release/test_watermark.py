"""Watermark: payload round trips through the edits the release gate promises, and unmarked audio stays unmarked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soundtrail.corpus import edits as attacks
from soundtrail.release import watermark as wm
from soundtrail.release import watermark_code as code
from tests.audio_fixtures import melody

RATE = 44_100
PAYLOAD = 0xC0FFEE42


def _swr_db(host: np.ndarray, marked: np.ndarray) -> float:
    mark = (marked - host).astype(np.float64)
    return 10 * math.log10(float(np.sum(np.square(host, dtype=np.float64))) / float(np.sum(mark**2)))


def _song(seed: int, seconds: float, rate: int) -> np.ndarray:
    """A melody over a quiet noise bed: a bare three-partial melody is too sparse for the 30 dB budget."""
    tune = melody(seed=seed, seconds=seconds, rate=rate)
    return tune + 0.01 * np.random.default_rng(seed).standard_normal(tune.size).astype(np.float32)


@pytest.fixture(scope="module")
def host() -> np.ndarray:
    """Six seconds of stereo melody, as ``[2, T]``."""
    song = _song(3, 6.0, RATE)
    return np.stack([song, 0.8 * song])


@pytest.fixture(scope="module")
def marked(host: np.ndarray) -> np.ndarray:
    return wm.embed(host, RATE, PAYLOAD)


def test_payload_hex_round_trip_and_validation():
    assert wm.payload_to_hex(PAYLOAD) == "c0ffee42"
    assert wm.hex_to_payload("C0FFEE42") == wm.hex_to_payload("0xc0ffee42") == PAYLOAD
    assert wm.payload_to_hex(0) == "00000000"
    for bad in ("c0ffee4", "c0ffee420", "g0ffee42", ""):
        with pytest.raises(ValueError):
            wm.hex_to_payload(bad)
    with pytest.raises(ValueError):
        wm.payload_to_hex(1 << 32)


def test_code_corrects_noisy_symbols_and_crc_rejects_a_wrong_word():
    rng = np.random.default_rng(1)
    symbols = code.encode(PAYLOAD)
    assert symbols.shape == (code.CODED_BITS,) and set(np.unique(symbols)) == {-1.0, 1.0}
    noisy = symbols + rng.normal(0.0, 0.7, size=(20, symbols.size))
    assert (np.sign(noisy) != symbols).mean() > 0.05  # the code has real errors to fix
    for message in code.viterbi(noisy)[0]:
        assert code.unpack(message) == (PAYLOAD, True)
    message = code.viterbi(symbols)[0][0]
    message[3] ^= 1
    assert code.unpack(message)[1] is False


def test_viterbi_returns_the_best_codeword_and_its_correlation():
    rng = np.random.default_rng(4)
    soft = rng.normal(0.0, 1.0, size=(6, code.CODED_BITS))
    messages, fit = code.viterbi(soft)
    for row, message, value in zip(soft, messages, fit, strict=True):
        payload, _ = code.unpack(message)
        word = code.encode(payload)  # the zero tail and a CRC that may not match: rebuild from the bits
        bits = np.concatenate([message, np.zeros(code.TAIL_BITS, dtype=np.uint8)])
        assert value == pytest.approx(float(row @ _encode_bits(bits)), rel=1e-5)
        assert value >= float(row @ word) - 1e-4  # no codeword correlates better, e.g. the CRC-valid one


def test_list_viterbi_ranks_distinct_codewords_and_recovers_a_crc_valid_rival():
    rng = np.random.default_rng(6)
    soft = rng.normal(0.0, 1.0, size=(4, code.CODED_BITS))
    lists, fit = code.list_viterbi(soft, 6)
    assert np.array_equal(lists[:, 0], code.viterbi(soft)[0])  # the head of the list is the Viterbi word
    assert np.all(np.diff(fit, axis=1) <= 1e-4)
    for row, words, values in zip(soft, lists, fit, strict=True):
        assert len({word.tobytes() for word in words}) == 6
        for word, value in zip(words, values, strict=True):
            bits = np.concatenate([word, np.zeros(code.TAIL_BITS, dtype=np.uint8)])
            assert value == pytest.approx(float(row @ _encode_bits(bits)), rel=1e-5)
    # a sent word pushed just behind a rival that fails the CRC: the list still holds it
    sent = code.encode(PAYLOAD)
    rival_bits = np.concatenate([code.viterbi(sent)[0][0], np.zeros(code.TAIL_BITS, dtype=np.uint8)])
    rival_bits[40] ^= 1  # inside the CRC: the rival's CRC fails
    rival = _encode_bits(rival_bits)
    soft = 0.45 * sent + 0.55 * rival
    assert code.unpack(code.viterbi(soft)[0][0]) != (PAYLOAD, True)
    assert (PAYLOAD, True) in [code.unpack(word) for word in code.list_viterbi(soft, 4)[0][0]]


def _encode_bits(bits: np.ndarray) -> np.ndarray:
    """The convolutional code of arbitrary message bits (the module encodes payload + CRC only)."""
    register, out = 0, []
    for bit in bits:
        register = ((int(bit) << (code.CONSTRAINT - 1)) | (register >> 1)) & ((1 << code.CONSTRAINT) - 1)
        out.extend(1.0 - 2.0 * (bin(register & g).count("1") & 1) for g in code.GENERATORS)
    return np.array(out)


def test_clean_round_trip_keeps_shape_and_swr(host: np.ndarray, marked: np.ndarray):
    assert marked.shape == host.shape and marked.dtype == np.float32
    assert _swr_db(host, marked) >= 30.0
    found = wm.detect(marked, RATE)
    assert found.detected and found.payload == PAYLOAD
    assert found.p_value < 1e-12 and found.bit_confidence > 0.9
    assert found.to_json() == {"detected": True, "payload": "c0ffee42", "p_value": found.p_value}


def test_mono_input_at_another_rate():
    song = _song(5, 5.0, 32_000)
    marked = wm.embed(song, 32_000, 7)
    assert marked.shape == song.shape
    assert wm.detect(marked, 32_000).payload == 7


def test_survives_gain_noise_and_a_crop_at_an_arbitrary_offset(marked: np.ndarray):
    rng = np.random.default_rng(2)
    edited = attacks.white_noise(attacks.gain(marked, -6.0), 20.0, rng)
    excerpt = edited[:, 12_345:12_345 + int(4.5 * RATE)]
    found = wm.detect(excerpt, RATE)
    assert found.detected and found.payload == PAYLOAD


def test_survives_a_16_khz_round_trip(marked: np.ndarray):
    assert wm.detect(attacks.resample_roundtrip(marked, RATE, 16_000), RATE).payload == PAYLOAD


def test_survives_mp3_at_128_kbps(marked: np.ndarray):
    decoded = attacks.mp3_roundtrip(marked, RATE, "128k")
    assert decoded.shape[0] == marked.shape[0]
    assert wm.detect(decoded, RATE).payload == PAYLOAD


def test_unmarked_audio_is_not_detected(host: np.ndarray):
    found = wm.detect(host, RATE)
    assert not found.detected and found.payload is None
    assert found.p_value > 1e-3
    assert found.to_json()["payload"] is None


def test_wrong_key_finds_nothing(marked: np.ndarray):
    found = wm.detect(marked, RATE, wm.WatermarkConfig(key="someone-else"))
    assert not found.detected and found.p_value > 1e-3


def test_p_value_is_the_hoeffding_bound_over_alignments_and_crc_valid_codewords():
    config = wm.WatermarkConfig()
    assert wm._p_value(0.0, config) == 1.0
    z = 10.0
    assert wm._p_value(z, config) == pytest.approx(512 * 2**32 * math.exp(-z * z / 2))
    assert wm._p_value(9.0, config) > config.false_positive_rate > wm._p_value(9.3, config)


def test_silence_and_tiny_clips_are_handled():
    silence = np.zeros((1, RATE * 3), dtype=np.float32)
    assert np.array_equal(wm.embed(silence, RATE, PAYLOAD), silence)
    assert not wm.detect(silence, RATE).detected
    assert not wm.detect(np.ones(100, dtype=np.float32), RATE).detected
