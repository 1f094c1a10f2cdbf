"""The landmark query's quad candidate stage: invariant sampling, cell counting, and verification of candidates only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from soundtrail.screening.landmarks.candidates import QuadCandidates, _strongest_cells
from soundtrail.screening.landmarks.hashes import (
    LandmarkConfig,
    Quads,
    _first_partners,
    _quads,
    landmarks,
    probe_hashes,
    quad_fine_values,
)
from soundtrail.screening.landmarks.index import LandmarkIndex
from tests.screening.test_signals import SAMPLE_RATE, pitch_shift, synth_music

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    return [synth_music(16.0, seed) for seed in range(10, 16)]


def _planted(copy: np.ndarray, at_s: float = 7.0, seconds: float = 20.0) -> np.ndarray:
    host = synth_music(seconds, 99)
    host[int(at_s * SR):int(at_s * SR) + len(copy)] = copy
    return host


def _quads_of(t: np.ndarray, f: np.ndarray, cfg: LandmarkConfig) -> Quads:
    partner, valid = _first_partners(t, f, cfg, cfg.quad_fan_out)
    return _quads(t, f, partner, valid, cfg)


def test_a_pitch_shift_keeps_the_same_sampled_quads_and_probing_reaches_their_hashes() -> None:
    rng = np.random.default_rng(0)
    cfg = LandmarkConfig()
    t = np.sort(rng.integers(0, 2_000, size=1_500))
    f = rng.uniform(20, 150, size=1_500)
    original = _quads_of(t, f, cfg)
    shifted = _quads_of(t, f + 2.0 * cfg.bins_per_octave / 12, cfg)  # two semitones up
    fine = quad_fine_values(cfg)
    assert len(original.hashes) == len(shifted.hashes) > 500
    assert 1 / 6 < len(original.hashes) / len(_quads_of(t, f, replace(cfg, quad_sample=1)).hashes) < 1 / 3
    assert np.array_equal(original.hashes % fine, shifted.hashes % fine)  # sampling looked at invariant fields only
    assert not np.array_equal(original.hashes, shifted.hashes)  # the anchor band moved ...
    _, probes = probe_hashes(cfg, shifted, fine)
    assert np.isin(original.hashes, probes).all()  # ... and the probes of the shifted quads cover it


def test_strongest_cells_counts_split_cells_together_and_ranks_assets_by_their_best_cell() -> None:
    rng = np.random.default_rng(1)
    background = 20_000  # chance hits spread over 2,000 assets: at most a few per cell
    asset = [rng.integers(0, 2_000, background)]
    semitone = [rng.integers(-2, 3, background)]
    delay = [rng.integers(-30, 30, background)]
    # planted: asset 5000 with 16 hits in one cell; 5001 with 11 + 11 split over two neighbouring delay cells;
    # 5002 with 12 hits spread over 3 pitch cells (4 each: no better than chance)
    for owner, pitches, delays in ((5000, [1] * 16, [3] * 16), (5001, [0] * 22, [7] * 11 + [8] * 11),
                                   (5002, [-2, -1, 0] * 4, [2] * 12)):
        asset.append(np.full(len(pitches), owner))
        semitone.append(np.array(pitches))
        delay.append(np.array(delays))
    ranked = _strongest_cells(*(np.concatenate(part) for part in (asset, semitone, delay)), count=5)
    assert ranked[:2].tolist() == [5001, 5000]
    assert 5002 not in ranked[:2]
    assert len(ranked) == len(set(ranked.tolist())) == 5


def test_candidate_stage_finds_an_edited_copy_among_many_indexed_tracks(tracks) -> None:
    cfg = LandmarkConfig()
    real = [landmarks(track, SR, cfg).quads for track in tracks]
    pool = Quads(*(np.concatenate([getattr(q, name) for q in real]) for name in ("t1", "f1", "hashes", "log_dt")))
    rng = np.random.default_rng(2)
    stage = QuadCandidates(cfg)
    for i, quads in enumerate(real):
        stage.add(i, quads)
    for i in range(len(real), 600):  # filler tracks: real hashes at random times, posting lists as in real music
        rows = rng.integers(len(pool.hashes), size=len(pool.hashes) // len(real))
        t1 = np.sort(rng.integers(0, 1_000, size=len(rows))).astype(np.int32)
        stage.add(i, Quads(t1, pool.f1[rows], pool.hashes[rows], pool.log_dt[rows]))
    first = 0
    for k, track in enumerate(tracks):
        excerpt = track[int(4.0 * SR):int(10.0 * SR)]
        for copy in (pitch_shift(excerpt, 2.0), excerpt + 0.5 * synth_music(6.0, 98)):
            first += stage.best_assets(landmarks(_planted(copy), SR, cfg).quads, 8)[0] == k
    # 11 of 12 when written: this sparse test music keeps ~275 quads per 16 s track, and one mixed copy kept too
    # few of them to outvote the filler (the release benchmark's denser corpus keeps ~2,000 per 30 s)
    assert first >= 10


def test_verifying_only_the_candidates_finds_the_match_verifying_all_assets_does(tmp_path, tracks) -> None:
    everyone = LandmarkIndex(LandmarkConfig(candidate_assets=len(tracks)))
    few = LandmarkIndex(LandmarkConfig(candidate_assets=2))
    for i, track in enumerate(tracks):
        everyone.add(f"a{i}", track, SR)
        few.add(f"a{i}", track, SR)
    query = _planted(pitch_shift(tracks[2][int(3.0 * SR):int(9.0 * SR)], -2.0))
    expected = everyone.query(query, SR, min_duration_s=4.0)
    assert expected and expected[0].asset_id == "a2" and abs(expected[0].query_offset_s - 7.0) < 1.0
    assert few.query(query, SR, min_duration_s=4.0)[0] == expected[0]
    few.save(tmp_path / "landmarks")
    reloaded = LandmarkIndex.load(tmp_path / "landmarks")
    assert reloaded.config == few.config and reloaded.entries == few.entries
    assert reloaded.query(query, SR, min_duration_s=4.0)[0] == expected[0]
    for fragment in (query[:SR], np.zeros(3 * SR, np.float32)):  # too few quads to choose any candidate
        assert few.query(fragment, SR, min_duration_s=0.5) == []


def test_probes_are_sorted_by_hash_then_owner_and_each_owner_probes_its_own_hash() -> None:
    rng = np.random.default_rng(5)
    cfg = LandmarkConfig()
    t = np.sort(rng.integers(0, 2_000, size=1_500))
    quads = _quads_of(t, rng.uniform(20, 150, size=1_500), cfg)
    owner, probes = probe_hashes(cfg, quads, quad_fine_values(cfg))
    pairs = list(zip(probes.tolist(), owner.tolist(), strict=True))
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    assert set(enumerate(quads.hashes.tolist())) <= {(o, p) for p, o in pairs}


def test_probing_refuses_hashes_too_large_to_sort_with_their_owner() -> None:
    cfg = LandmarkConfig()
    quads = Quads(np.zeros(2, np.int32), np.full(2, 30.0, np.float32), np.full(2, 1 << 62, np.int64), np.ones(2))
    with pytest.raises(ValueError, match="leave no room"):
        probe_hashes(cfg, quads, quad_fine_values(cfg))
