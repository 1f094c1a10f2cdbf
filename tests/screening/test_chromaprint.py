"""Chromaprint items and the fingerprint index on synthetic music."""

from __future__ import annotations

import io
import itertools

import acoustid
import chromaprint as chromaprint_codec
import numpy as np
import pytest
import soundfile as sf

from soundtrail.audio import resample
from soundtrail.screening.chromaprint import (
    ITEM_SECONDS,
    NEAR_COPY_BER,
    FingerprintIndex,
    bit_errors,
    chromaprint,
    chromaprint_blocks,
    match_score,
)
from soundtrail.screening.method import Match
from tests.screening.test_signals import SAMPLE_RATE, synth_music

SR = SAMPLE_RATE


def _ogg_roundtrip(audio: np.ndarray) -> np.ndarray:
    """A lossy re-encode in another container (Ogg Vorbis via libsndfile), decoded at 44.1 kHz."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, format="OGG", subtype="VORBIS")
    buffer.seek(0)
    decoded, rate = sf.read(buffer, dtype="float32")
    return resample(decoded, rate, 44_100)


def _ber(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(bit_errors(a[:n], b[:n]).mean())


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    return [synth_music(20.0, seed) for seed in range(6)]


@pytest.fixture(scope="module")
def index(tracks: list[np.ndarray]) -> FingerprintIndex:
    built = FingerprintIndex()
    for i, track in enumerate(tracks):
        built.add(f"track-{i}", chromaprint(track, SR))
    return built


def test_items_come_every_item_seconds_and_identical_audio_has_identical_items(tracks) -> None:
    items = chromaprint(tracks[0], SR)
    assert items.dtype == np.uint32
    assert abs(len(items) * ITEM_SECONDS - 20.0) < 3.0  # the first ~2.7 s feed the first item
    assert np.array_equal(items, chromaprint(tracks[0].copy(), SR))
    assert len(chromaprint(tracks[0][: SR // 2], SR)) == 0


@pytest.mark.parametrize("rate", [22_050, 44_100])
def test_own_decimation_gives_the_items_chromaprints_resampler_gives(tracks, rate: int) -> None:
    """chromaprint() decimates to 11,025 Hz itself for speed; the items must stay Chromaprint's.

    Broadband noise fills the band above 5.5 kHz, so a decimator that aliased it (plain subsampling gives a BER
    of about 0.05 here) would fail.
    """
    audio = resample(tracks[2], SR, rate)
    audio = audio + 0.1 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    encoded = acoustid.fingerprint(rate, 1, iter([pcm]), maxlength=3600)
    reference = np.asarray(chromaprint_codec.decode_fingerprint(encoded)[0], dtype=np.int64).astype(np.uint32)
    ours = chromaprint(audio, rate)
    assert abs(len(ours) - len(reference)) <= 1
    assert _ber(ours, reference) < 0.02


@pytest.mark.parametrize("rate", [22_050, 44_100, 48_000])
def test_blocks_give_the_items_of_the_whole(tracks, rate: int) -> None:
    """Ingest fingerprints while it decodes: any split into blocks (empty and one-sample blocks included) gives the
    items of the whole array, bit for bit, through the decimating filter (22.05/44.1 kHz) or without it (48 kHz)."""
    audio = resample(tracks[2], SR, rate)
    rng = np.random.default_rng(rate)
    cuts = np.sort(np.concatenate([rng.integers(0, len(audio), 30), [0, 0, 1, 2, len(audio) - 1, len(audio)]]))
    whole = chromaprint(audio, rate)
    assert len(whole) > 100
    assert np.array_equal(chromaprint_blocks((audio[a:b] for a, b in itertools.pairwise(cuts)), rate), whole)
    assert np.array_equal(chromaprint_blocks(np.array_split(audio, 7), rate), whole)
    assert len(chromaprint_blocks([audio[: SR // 2]], rate)) == 0 and len(chromaprint_blocks([], rate)) == 0


def test_near_copies_have_low_ber_and_unrelated_music_about_half(tracks) -> None:
    original = chromaprint(tracks[0], SR)
    reencoded = chromaprint(_ogg_roundtrip(tracks[0]), 44_100)
    quieter = chromaprint(tracks[0] * 0.25, SR)
    unrelated = chromaprint(tracks[1], SR)
    assert _ber(original, reencoded) < 0.15
    assert _ber(original, quieter) < 0.15
    assert _ber(original, unrelated) > 0.35


def test_index_locates_a_planted_six_second_copy(tracks, index: FingerprintIndex) -> None:
    query = synth_music(25.0, 99)
    query[int(9.0 * SR):int(15.0 * SR)] = tracks[4][int(3.0 * SR):int(9.0 * SR)]
    matches = index.query(chromaprint(query, SR), min_duration_s=5.0)
    assert [m.asset_id for m in matches] == ["track-4"]
    match = matches[0]
    assert abs(match.query_offset_s - 9.0) < 1.0
    assert abs(match.asset_offset_s - 3.0) < 1.0
    assert abs(match.duration_s - 6.0) < 1.5
    ber = match.details["ber"]
    assert ber < 0.15 and match.score == pytest.approx(1 - 2 * ber, abs=1e-3)


def test_index_rejects_unrelated_music(index: FingerprintIndex) -> None:
    for seed in (200, 201, 202):
        assert index.query(chromaprint(synth_music(20.0, seed), SR), min_duration_s=3.0) == []


def test_index_round_trips_through_bytes_and_files(tmp_path, tracks, index: FingerprintIndex) -> None:
    query = chromaprint(_ogg_roundtrip(tracks[1][int(4.0 * SR):int(14.0 * SR)]), 44_100)
    expected = index.query(query)
    assert expected and expected[0].asset_id == "track-1"
    assert FingerprintIndex.from_bytes(index.to_bytes()).query(query) == expected
    index.save(tmp_path / "fp.npz")
    reloaded = FingerprintIndex.load(tmp_path / "fp.npz")
    assert reloaded.asset_ids == index.asset_ids
    assert reloaded.query(query) == expected


def test_adding_after_queries_keeps_everything_findable(tracks) -> None:
    growing = FingerprintIndex()
    for i, track in enumerate(tracks):
        growing.add(f"t{i}", chromaprint(track, SR))
        growing.query(chromaprint(track, SR))  # forces a new segment each time, merged as they pile up
    for i, track in enumerate(tracks):
        assert growing.query(chromaprint(track[int(5 * SR):int(15 * SR)], SR))[0].asset_id == f"t{i}"
    with pytest.raises(ValueError, match="already"):
        growing.add("t0", chromaprint(tracks[0], SR))


def test_a_proposed_stretch_is_confirmed_only_at_the_copy_it_names() -> None:
    """Proposals (the landmark method's unedited matches) are checked item by item: the right track at the right
    alignment is confirmed with the proposed stretch; another offset, another track, an unknown id or a stretch
    shorter than the minimum is not."""
    track, unrelated = synth_music(16.0, 2), synth_music(16.0, 3)
    copy = track[int(4.0 * SAMPLE_RATE):int(10.0 * SAMPLE_RATE)] + 0.5 * synth_music(6.0, 50)  # other music, -6 dB
    query = synth_music(20.0, 77)
    query[int(7.0 * SAMPLE_RATE):int(7.0 * SAMPLE_RATE) + len(copy)] = copy
    index = FingerprintIndex()
    index.add("track", chromaprint(track, SAMPLE_RATE))
    index.add("unrelated", chromaprint(unrelated, SAMPLE_RATE))
    fingerprint = chromaprint(query, SAMPLE_RATE)
    assert index.query(fingerprint, 4.4) == []  # too few exactly equal items for the key votes

    def proposed(asset_id: str, asset_offset_s: float, duration_s: float) -> Match:
        return Match(asset_id, 7.1, asset_offset_s, duration_s, score=0.3, method="landmarks")

    [match] = index.query(fingerprint, 4.4, proposals=[proposed("track", 4.1, 5.8)])
    assert (match.asset_id, match.query_offset_s, match.asset_offset_s, match.duration_s) == ("track", 7.1, 4.1, 5.8)
    ber = match.details["ber"]
    assert match.method == "chromaprint" and ber <= NEAR_COPY_BER
    assert match.score == pytest.approx(match_score(ber), abs=1e-3)
    for wrong in (proposed("track", 1.1, 5.8), proposed("unrelated", 4.1, 5.8), proposed("never-indexed", 4.1, 5.8),
                  proposed("track", 4.1, 4.0)):
        assert index.query(fingerprint, 4.4, proposals=[wrong]) == []
