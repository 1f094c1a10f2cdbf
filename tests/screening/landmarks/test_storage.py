"""The landmark index on disk: a folder of memory-mapped arrays that answers as the index in memory did."""

from __future__ import annotations

import numpy as np
import pytest

from soundtrail.screening.landmarks.hashes import LandmarkConfig
from soundtrail.screening.landmarks.index import LandmarkIndex
from tests.screening.test_signals import SAMPLE_RATE, pitch_shift, synth_music

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def index() -> LandmarkIndex:
    built = LandmarkIndex(LandmarkConfig(candidate_assets=2))  # 4 assets: the quad stage chooses 2 of them
    for seed in range(20, 24):
        built.add(f"a{seed}", synth_music(16.0, seed), SR)
    return built


def _query(source: np.ndarray) -> np.ndarray:
    host = synth_music(20.0, 98)
    copy = pitch_shift(source[int(3.0 * SR):int(9.0 * SR)], 2.0)
    host[int(6.0 * SR):int(6.0 * SR) + len(copy)] = copy
    return host


def test_loaded_index_is_mapped_and_matches_as_before(index: LandmarkIndex, tmp_path) -> None:
    query = _query(synth_music(16.0, 22))
    expected = index.query(query, SR, min_duration_s=4.0)
    assert expected and expected[0].asset_id == "a22"
    index.save(tmp_path / "landmarks")
    loaded = LandmarkIndex.load(tmp_path / "landmarks")
    assert isinstance(loaded._hashes, np.memmap) and isinstance(loaded._candidates._keys, np.memmap)
    assert loaded.config == index.config and len(loaded) == len(index) and loaded.entries == index.entries
    assert loaded.query(query, SR, min_duration_s=4.0) == expected


def test_loaded_index_takes_new_assets_and_saves_over_its_own_files(index: LandmarkIndex, tmp_path) -> None:
    index.save(tmp_path / "landmarks")
    loaded = LandmarkIndex.load(tmp_path / "landmarks")
    new_track = synth_music(16.0, 30)
    loaded.add("a30", new_track, SR)
    loaded.save(tmp_path / "landmarks")  # replaces the files the loaded arrays still map
    again = LandmarkIndex.load(tmp_path / "landmarks")
    assert len(again) == len(index) + 1
    found = again.query(_query(new_track), SR, min_duration_s=4.0)
    assert found and found[0].asset_id == "a30" and abs(found[0].query_offset_s - 6.0) < 1.0


def test_unfinished_or_damaged_folder_is_refused(index: LandmarkIndex, tmp_path) -> None:
    index.save(tmp_path / "landmarks")
    hashes = tmp_path / "landmarks" / "hashes.npy"
    whole = np.load(hashes)
    np.save(hashes, whole[: len(whole) // 2])  # a copy whose arrays no longer fit together
    with pytest.raises(ValueError, match="mismatched lengths"):
        LandmarkIndex.load(tmp_path / "landmarks")
    (tmp_path / "landmarks" / "landmarks.json").unlink()  # as a save killed before its manifest leaves it
    with pytest.raises(FileNotFoundError):
        LandmarkIndex.load(tmp_path / "landmarks")
