"""The codec's audio crops: read from the files on demand, the same for a step wherever it is computed, the ranks'
crops one global batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundtrail.audio import load_mono, read_span
from soundtrail.data.crops import AudioCrops, sample_segments
from tests.audio_fixtures import melody, write

RATE = 8000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three stereo recordings at other rates than the codec's (FLAC and WAV), of different lengths."""
    folder = tmp_path_factory.mktemp("crops")
    return [str(write(folder / "a.flac", melody(0, 3.0, 44_100), 44_100)),
            str(write(folder / "b.wav", melody(1, 1.5, 22_050), 22_050)),
            str(write(folder / "c.wav", melody(2, 2.0, RATE), RATE))]


def test_a_span_is_the_same_stretch_of_the_decoded_file(files: list[str]) -> None:
    """Decoding 0.25 s from 1.1 s in, with the resampler's context, gives what decoding everything gives there."""
    for path in files[:2]:
        whole = load_mono(path, RATE)
        span = read_span(path, 9_000, 2000, RATE)
        assert span.shape == (2000,) and span.dtype == np.float32
        np.testing.assert_allclose(span, whole[9_000:11_000], atol=1e-4)
    tail = read_span(files[2], 15_000, 2000, RATE)  # the file holds 16,000 samples: 1,000 are audio, then zeros
    np.testing.assert_allclose(tail[:1000], load_mono(files[2], RATE)[15_000:], atol=1e-4)
    assert not tail[1000:].any()


def test_a_crop_decodes_only_its_stretch(files: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    read = sf.SoundFile.read

    def counting(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    read_span(files[0], 10_000, 800, RATE)
    assert len(asked) == 1 and 0 < asked[0] < 800 * 44_100 // RATE + 1000, asked  # the file holds 132,300


def test_crops_are_one_global_batch_whatever_the_world_size(files: list[str]) -> None:
    """Two ranks of 3 crops read, step for step, what one process of 6 reads; a step is a function of its number."""
    whole = AudioCrops(files, RATE, 800, 6, seed=4)
    ranks = [AudioCrops(files, RATE, 800, 3, seed=4, rank=rank, world_size=2) for rank in range(2)]
    for step in (0, 7):
        joined = torch.cat([rank.batch(step).audio for rank in ranks])
        assert torch.equal(joined, whole.batch(step).audio)
        assert ranks[0].batch(step).files + ranks[1].batch(step).files == whole.batch(step).files
    assert torch.equal(whole.batch(3).audio, AudioCrops(files, RATE, 800, 6, seed=4).batch(3).audio)
    assert not torch.equal(whole.batch(3).audio, whole.batch(4).audio)
    read = [rank.files_read(5) for rank in ranks][0]
    assert read == [sorted({files[index] for step in range(5) for index in rank.batch(step).files})
                    for rank in ranks]


def test_files_are_drawn_in_proportion_to_their_length() -> None:
    lengths = [16_000, 4_000, 100]
    first = sample_segments(lengths, 2000, 8, seed=1, step=5)
    assert first == sample_segments(lengths, 2000, 8, seed=1, step=5)
    assert first != sample_segments(lengths, 2000, 8, seed=1, step=6)
    assert all(0 <= start <= max(0, lengths[i] - 2000) for i, start in first)
    counts = np.bincount([index for step in range(200) for index, _ in sample_segments(lengths, 100, 8, 0, step)],
                         minlength=3)
    assert counts[0] > 3 * counts[1] > 0 and counts[2] < counts[1]


def test_no_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no audio files"):
        AudioCrops([], RATE, 800, 2)
