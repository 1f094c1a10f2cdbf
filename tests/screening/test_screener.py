"""Release-gate screening: token n-grams, landmark triplets under pitch/tempo edits, and the combined verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundtrail.screening.chromaprint import FingerprintIndex, chromaprint
from soundtrail.screening.landmarks.index import LandmarkIndex
from soundtrail.screening.method import Match
from soundtrail.screening.screener import Screener, ScreenResult, ScreenThresholds, verdict_of
from soundtrail.screening.tokens import TokenNgramConfig, TokenNgramIndex
from tests.screening.test_signals import SAMPLE_RATE, pitch_shift, synth_music, time_stretch

SR = SAMPLE_RATE
FRAME_RATE = 50.0
LANDMARKS_FLAG = ScreenThresholds.declared().flag_at("landmarks")


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    return [synth_music(16.0, seed) for seed in range(5)]


@pytest.fixture(scope="module")
def landmarks(tracks) -> LandmarkIndex:
    index = LandmarkIndex()
    for i, track in enumerate(tracks):
        index.add(f"a{i}", track, SR)
    return index


def _plant(copy: np.ndarray, at_s: float, seconds: float = 20.0, seed: int = 77) -> np.ndarray:
    host = synth_music(seconds, seed)
    start = int(at_s * SR)
    host[start:start + len(copy)] = copy[: len(host) - start]
    return host


def test_token_index_finds_a_memorised_run_at_its_offset() -> None:
    rng = np.random.default_rng(0)
    assets = {f"a{i}": rng.integers(0, 256, size=(4, 1500)) for i in range(4)}
    index = TokenNgramIndex(TokenNgramConfig(n=8, frame_rate=FRAME_RATE))
    for asset_id, codes in assets.items():
        index.add(asset_id, codes)
    generated = rng.integers(0, 256, size=(4, 1000))
    generated[0, 200:550] = assets["a2"][0, 700:1050]  # 7 s of the first codebook, memorised
    generated[0, 300] = (generated[0, 300] + 1) % 256  # with one token changed
    matches = index.query(generated, min_duration_s=5.0)
    assert [m.asset_id for m in matches] == ["a2"]
    match = matches[0]
    assert match.query_offset_s == pytest.approx(4.0) and match.asset_offset_s == pytest.approx(14.0)
    assert match.duration_s == pytest.approx(7.0, abs=0.2)
    assert 0.9 < match.score < 1.0  # the changed token costs its 8 n-grams
    assert index.query(rng.integers(0, 256, size=(4, 1000))) == []
    assert TokenNgramIndex.from_bytes(index.to_bytes()).query(generated) == matches


def test_token_run_shorter_than_the_minimum_is_ignored() -> None:
    rng = np.random.default_rng(1)
    asset = rng.integers(0, 256, size=1000)
    index = TokenNgramIndex(TokenNgramConfig(frame_rate=FRAME_RATE))
    index.add("a", asset)
    generated = rng.integers(0, 256, size=600)
    generated[100:250] = asset[300:450]  # 3 s
    assert index.query(generated, min_duration_s=5.0) == []
    assert len(index.query(generated, min_duration_s=2.5)) == 1


@pytest.mark.parametrize(("edit", "semitones", "tempo"), [
    (lambda x: pitch_shift(x, 2.0), 2.0, 1.0),
    (lambda x: pitch_shift(x, -2.0), -2.0, 1.0),
    (lambda x: time_stretch(x, 1.05), 0.0, 1.05),
    (lambda x: time_stretch(pitch_shift(x, 1.0), 0.95), 1.0, 0.95),
])
def test_landmarks_find_pitch_and_tempo_edits(tracks, landmarks, edit, semitones, tempo) -> None:
    original = tracks[3][int(4.0 * SR):int(12.0 * SR)]
    query = _plant(edit(original), at_s=6.0)
    found = [m for m in landmarks.query(query, SR, min_duration_s=5.0) if m.asset_id == "a3"]
    assert found, "the edited copy was not found"
    match = found[0]
    assert abs(match.query_offset_s - 6.0) < 1.0 and abs(match.asset_offset_s - 4.0) < 1.0
    assert match.semitones == pytest.approx(semitones, abs=0.3)
    assert match.tempo == pytest.approx(tempo, abs=0.02)
    assert match.score > 0.1


def test_chromaprint_misses_a_pitch_shift_that_landmarks_find(tracks, landmarks) -> None:
    original = tracks[2][int(5.0 * SR):int(13.0 * SR)]
    chroma = FingerprintIndex()
    for i, track in enumerate(tracks):
        chroma.add(f"a{i}", chromaprint(track, SR))
    assert chroma.query(chromaprint(_plant(original, at_s=6.0), SR), min_duration_s=4.0)[0].asset_id == "a2"
    shifted = _plant(pitch_shift(original, 2.0), at_s=6.0)
    assert chroma.query(chromaprint(shifted, SR), min_duration_s=4.0) == []
    assert landmarks.query(shifted, SR, min_duration_s=4.0)[0].asset_id == "a2"


def test_landmarks_ignore_unrelated_music(landmarks) -> None:
    for seed in (300, 301):
        assert all(m.score < LANDMARKS_FLAG
                   for m in landmarks.query(synth_music(20.0, seed), SR, min_duration_s=4.0))


def test_verdict_uses_each_methods_thresholds() -> None:
    thresholds = ScreenThresholds.declared(chromaprint_flag=0.5, chromaprint_block=0.7, landmarks_flag=0.1,
                                           landmarks_block=0.3, tokens_flag=0.3, tokens_block=0.6)

    def match(score: float, method: str) -> Match:
        return Match("a", 1.0, 2.0, 6.0, score, method)

    assert verdict_of([], thresholds).verdict == "pass"
    assert verdict_of([match(0.4, "chromaprint"), match(0.05, "landmarks")], thresholds).to_dict() == {
        "verdict": "pass", "matches": []}
    flagged = verdict_of([match(0.2, "landmarks"), match(0.55, "tokens")], thresholds)
    assert flagged.verdict == "flag" and [m.method for m in flagged.matches] == ["tokens", "landmarks"]
    assert verdict_of([match(0.2, "landmarks"), match(0.75, "chromaprint")], thresholds).verdict == "block"
    assert verdict_of([match(0.65, "tokens")], thresholds).verdict == "block"


def test_screener_blocks_copies_flags_edits_passes_new_music_and_reloads(tmp_path, tracks) -> None:
    screener = Screener()
    rng = np.random.default_rng(2)
    codes = {}
    for i, track in enumerate(tracks[:3]):
        codes[f"a{i}"] = rng.integers(0, 256, size=(4, int(16 * FRAME_RATE)))
        screener.add_asset(f"a{i}", track, SR, codes=codes[f"a{i}"])

    copied = screener.screen(_plant(tracks[1][int(2 * SR):int(10 * SR)], at_s=5.0), SR)
    assert copied.verdict == "block"
    assert {m.method for m in copied.matches} >= {"chromaprint", "landmarks"}
    assert all(m.asset_id == "a1" for m in copied.matches)

    shifted = screener.screen(_plant(pitch_shift(tracks[0][int(3 * SR):int(11 * SR)], 2.0), at_s=4.0), SR)
    assert shifted.verdict != "pass"  # 8 s pitch-shifted by 2 semitones: flag or block by its length-weighted score
    assert [(m.asset_id, m.method) for m in shifted.matches] == [("a0", "landmarks")]

    new_music = synth_music(20.0, 400)
    assert screener.screen(new_music, SR).verdict == "pass"

    memorised = rng.integers(0, 256, size=(4, 1000))
    memorised[:, 100:500] = codes["a2"][:, 0:400]
    by_tokens = screener.screen(new_music, SR, codes=memorised)
    assert by_tokens.verdict == "block" and by_tokens.matches[0].method == "tokens"

    payload = json.loads(json.dumps(copied.to_dict()))
    assert set(payload) == {"verdict", "matches"}
    assert set(payload["matches"][0]) == {"asset_id", "query_offset_s", "asset_offset_s", "duration_s", "score",
                                          "method"}

    screener.save(tmp_path / "screen")
    reloaded = Screener.load(tmp_path / "screen")
    assert reloaded.thresholds == screener.thresholds
    assert reloaded.screen(_plant(tracks[1][int(2 * SR):int(10 * SR)], at_s=5.0), SR) == copied
    assert reloaded.screen(new_music, SR, codes=memorised) == by_tokens
    with pytest.raises(FileNotFoundError):
        Screener.load(tmp_path / "missing")


def test_silence_and_fragments_screen_as_pass() -> None:
    screener = Screener()
    screener.add_asset("silence", np.zeros(SR * 3, np.float32), SR)
    screener.add_asset("blip", synth_music(0.3, 5), SR)
    screener.add_asset("music", synth_music(8.0, 6), SR)
    for audio in (np.zeros(SR * 6, np.float32), np.zeros(10, np.float32), synth_music(8.0, 7)):
        assert screener.screen(audio, SR) == ScreenResult("pass", [])


def test_short_copies_under_other_music_or_shifted_are_found_inside_long_queries(tracks, landmarks) -> None:
    """5 s copies in 30 s of music: the candidate stage must not let the host's chance hits outvote them, and
    music mixed over a copy must not dilute its score (anchors are counted on the asset's side)."""
    excerpt = tracks[4][int(6.0 * SR):int(11.0 * SR)]
    other = synth_music(5.0, 88)
    flag = LANDMARKS_FLAG
    for copy in (excerpt + 0.5 * other, pitch_shift(excerpt, -2.0)):
        found = [m for m in landmarks.query(_plant(copy, at_s=17.0, seconds=30.0), SR, min_duration_s=4.4)
                 if m.asset_id == "a4"]
        assert found and abs(found[0].query_offset_s - 17.0) < 1.0
        assert found[0].score >= flag


@pytest.mark.parametrize(("asset", "other_seed"), [(2, 50), (4, 51)])
def test_chromaprint_confirms_a_mixed_copy_where_landmarks_propose_it(tracks, asset, other_seed) -> None:
    """A copy under other music at -6 dB: Chromaprint's key votes miss it and the landmark score stays under its
    flag threshold, but the items inside the landmark stretch agree with the asset's, so the screen flags it."""
    screener = Screener()
    for i, track in enumerate(tracks):
        screener.add_asset(f"a{i}", track, SR)
    copy = tracks[asset][int(4.0 * SR):int(10.0 * SR)] + 0.5 * synth_music(6.0, other_seed)
    query = _plant(copy, at_s=7.0)
    thresholds = screener.thresholds
    alone = screener.methods["chromaprint"].index.query(chromaprint(query, SR), thresholds.shortest_s)
    assert not [m for m in alone if m.asset_id == f"a{asset}"]
    matches = [m for m in screener.matches(query, SR) if m.asset_id == f"a{asset}"]
    landmark = [m for m in matches if m.method == "landmarks"]
    assert landmark and max(m.score for m in landmark) < thresholds.flag_at("landmarks")
    confirmed = [m for m in matches if m.method == "chromaprint"]
    assert confirmed and abs(confirmed[0].query_offset_s - 7.0) < 1.0
    assert (confirmed[0].query_offset_s, confirmed[0].duration_s) == (landmark[0].query_offset_s,
                                                                      landmark[0].duration_s)
    result = screener.screen(query, SR)
    assert result.verdict != "pass" and any(m.asset_id == f"a{asset}" for m in result.matches)
