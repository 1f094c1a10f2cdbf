"""Codec training: the loss falls, checkpoints resume bit-identically, finished runs are not redone."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.audio import write_wav
from soundtrail.codec.codecs import SoundtrailCodec, load_codec
from soundtrail.data.crops import sample_segments
from soundtrail.models.codec import CodecConfig
from soundtrail.train.codec import CodecTrainConfig, train_codec

SR = 8000
TINY = CodecConfig(sample_rate=SR, channels=8, strides=(4, 4, 4), latent_dim=32, num_codebooks=4, codebook_size=64)
CHORDS = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (261.6, 329.6, 392.0)]



@pytest.fixture(scope="module")
def chord_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("chords")
    t = np.arange(2 * SR) / SR
    paths = []
    for i, freqs in enumerate(CHORDS):
        path = folder / f"chord_{i}.wav"
        write_wav(path, (0.5 * sum(np.sin(2 * np.pi * f * t) for f in freqs) / 3).astype(np.float32), SR)
        paths.append(path)
    return paths


def test_tiny_codec_training_halves_the_loss(chord_files, tmp_path):
    train = CodecTrainConfig(batch_size=4, segment_seconds=0.25, learning_rate=1e-2, mel_fft_sizes=(256, 512),
                             checkpoint_every=1000)
    started = time.perf_counter()
    result = train_codec(chord_files, tmp_path / "codec", TINY, steps=60, train=train)
    run = result.run
    ratio = run.final_loss / run.initial_loss
    print(f"codec loss {run.initial_loss:.3f} -> {run.final_loss:.3f} (ratio {ratio:.2f}) "
          f"in {time.perf_counter() - started:.1f} s")
    assert ratio <= 0.5
    assert run.total_steps == 60 and run.start_step == 0
    assert result.assets_seen == sorted(str(p) for p in chord_files)
    assert result.codec_id == sha256_file(tmp_path / "codec" / "model.safetensors")[:16]
    codec = load_codec(tmp_path / "codec", "cpu")
    assert isinstance(codec, SoundtrailCodec) and codec.codec_id == result.codec_id
    assert codec.encode(torch.zeros(1, 1, SR)).shape == (1, 4, SR // 64)


class Killed(Exception):
    """Stands in for the process dying between steps."""


def _kill_at(step: int):
    def on_step(done: int, loss: float) -> None:
        assert np.isfinite(loss)
        if done == step:
            raise Killed

    return on_step


def test_killed_run_resumes_to_the_same_weights(chord_files, tmp_path):
    train = CodecTrainConfig(batch_size=2, segment_seconds=0.25, mel_fft_sizes=(256,), checkpoint_every=2,
                             adversarial=True, disc_channels=4, disc_fft_sizes=(256, 128))
    straight = train_codec(chord_files, tmp_path / "straight", TINY, steps=6, train=train)

    with pytest.raises(Killed):
        train_codec(chord_files, tmp_path / "resumed", TINY, steps=6, train=train, on_step=_kill_at(3))
    assert not checkpoint.is_complete(tmp_path / "resumed")
    assert [d.name for d in (tmp_path / "resumed" / "steps").iterdir()] == ["step-00000002"]
    resumed = train_codec(chord_files, tmp_path / "resumed", TINY, steps=6, train=train)

    assert resumed.run.start_step == 2
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.codec_id == straight.codec_id
    assert resumed.run.losses == straight.run.losses
    assert resumed.assets_seen == straight.assets_seen

    again = train_codec(chord_files, tmp_path / "resumed", TINY, steps=6, train=train)  # finished: not redone
    assert again.run.start_step == 6 and again.run.steps_run == 0 and again.codec_id == straight.codec_id
    assert again.assets_seen == straight.assets_seen

    longer = train_codec(chord_files, tmp_path / "resumed", TINY, steps=7, train=train)  # extends from step 6
    assert longer.run.start_step == 6 and longer.run.steps_run == 1 and longer.codec_id != straight.codec_id


def test_a_different_run_refuses_an_occupied_directory(chord_files, tmp_path):
    train = CodecTrainConfig(batch_size=2, segment_seconds=0.25, mel_fft_sizes=(256,))
    train_codec(chord_files, tmp_path / "codec", TINY, steps=1, train=train)
    with pytest.raises(ValueError, match="different"):
        train_codec(chord_files[:1], tmp_path / "codec", TINY, steps=1, train=train)


def test_segment_sampling_is_a_function_of_seed_and_step():
    lengths = [16000, 4000, 100]
    first = sample_segments(lengths, 2000, 8, seed=1, step=5)
    assert first == sample_segments(lengths, 2000, 8, seed=1, step=5)
    assert first != sample_segments(lengths, 2000, 8, seed=1, step=6)
    assert all(0 <= start <= max(0, lengths[i] - 2000) for i, start in first)
