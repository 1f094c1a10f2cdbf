"""``audio.AudioStream``: block decoding equals whole-file decoding, and the decode limits hold from the header
(before any sample is read) and while decoding."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf

from soundtrail.audio import AudioError, AudioLimitError, AudioStream, DecodeLimits, decode, rms_dbfs
from tests.audio_fixtures import RATE, melody, stereo, write


def sparse_wav(path: Path, data_bytes: int, channels: int = 1, rate: int = RATE) -> Path:
    """A PCM16 WAV whose data chunk claims ``data_bytes``: a sparse file of that apparent size, a few kB on disk."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    header = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", len(header) + data_bytes) + header)
        handle.write(np.full(2048, 1000, dtype="<i2").tobytes())
    os.truncate(path, 8 + len(header) + data_bytes)
    return path


@pytest.mark.parametrize(("name", "options"), [
    ("a.wav", {"subtype": "PCM_16"}), ("a.flac", {}), ("a.ogg", {"format": "OGG", "subtype": "VORBIS"})])
def test_blocks_are_the_whole_file_in_order(tmp_path: Path, name: str, options: dict) -> None:
    path = write(tmp_path / name, melody(1, seconds=5.0), **options)
    whole, rate = sf.read(str(path), dtype="float32", always_2d=True)
    with AudioStream(path) as stream:
        blocks = [block.copy() for block in stream.blocks(block_frames=10_000)]
    assert max(len(block) for block in blocks) == 10_000
    assert np.array_equal(np.concatenate(blocks), whole)
    assert (stream.frames_read, stream.info.sample_rate) == (len(whole), rate)
    assert stream.level_dbfs == pytest.approx(rms_dbfs(whole), abs=1e-3)
    audio, decoded_rate = decode(path)
    assert decoded_rate == rate and np.array_equal(audio, whole.T)


def test_a_header_over_the_limits_is_refused_before_any_sample_is_read(tmp_path: Path) -> None:
    """4 GiB of claimed 16-bit mono (13.5 h, an 8.6 GB float32 array) in a file of a few kB on disk."""
    path = sparse_wav(tmp_path / "claims_4gib.wav", 4 * 2**30 - 64)
    tracemalloc.start()
    try:
        with pytest.raises(AudioLimitError, match=r"too long: the header states 13 h 31 min \(48,696 s\), over the "
                                                  r"limit of 30 min 00 s \(1,800 s\)") as refused:
            AudioStream(path, DecodeLimits(max_duration_s=1800, max_decoded_mb=4000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.limit == "max_duration_s"
    assert peak < 1_000_000, "refused from the header, before any buffer was made"
    many_channels = sparse_wav(tmp_path / "wide.wav", 800_000_000, channels=64)  # 2.9 min, 1.6 GB of float32
    with pytest.raises(AudioLimitError, match=r"too large: the header states 1,600 MB of decoded samples \(64 "
                                              r"channels at 44100 Hz\), over the limit of 1,000 MB") as refused:
        AudioStream(many_channels, DecodeLimits(max_duration_s=1800, max_decoded_mb=1000))
    assert refused.value.limit == "max_decoded_mb"


def test_the_limits_hold_while_decoding_when_the_header_states_no_length(tmp_path: Path) -> None:
    """A header that gives no length (0 frames) passes the header check; decoding stops just past the limit."""
    path = tmp_path / "ten_seconds.wav"
    sf.write(str(path), stereo(melody(2, seconds=10.0)), RATE)
    with mock.patch.object(sf.SoundFile, "frames", new_callable=mock.PropertyMock, return_value=0), \
            AudioStream(path, DecodeLimits(max_duration_s=3.0, max_decoded_mb=4000)) as stream, \
            pytest.raises(AudioLimitError, match=r"too long: decoding passed 0 min 03 s"):
        for _block in stream.blocks(block_frames=RATE // 2):
            pass
    assert 3.0 * RATE < stream.frames_read <= 3.5 * RATE


def test_decoding_errors_name_the_problem(tmp_path: Path) -> None:
    whole = write(tmp_path / "whole.ogg", melody(3), format="OGG", subtype="VORBIS")
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with AudioStream(cut) as stream, pytest.raises(AudioError, match="truncated: the Ogg stream ends"):
        list(stream.blocks())
    nan = melody(4)
    nan[RATE * 6] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, RATE, subtype="FLOAT")
    with AudioStream(tmp_path / "nan.wav") as stream, pytest.raises(AudioError, match="NaN or Inf"):
        list(stream.blocks(block_frames=RATE))
    assert stream.frames_read == 7 * RATE, "the block holding the NaN stops the decode"
