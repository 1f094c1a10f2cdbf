"""Small synthetic recordings for tests: melodic note sequences that Chromaprint tells apart."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44_100


def melody(seed: int, seconds: float = 8.0, rate: int = RATE) -> np.ndarray:
    """A mono melody of plucked harmonic notes, different for every seed; float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    note_len = 0.25 + 0.05 * (seed % 3)
    for index, note in enumerate(rng.integers(45, 76, size=int(seconds / note_len) + 1)):
        start = int(index * note_len * rate)
        stop = min(start + int(note_len * rate), len(t))
        if start >= len(t):
            break
        freq = 440.0 * 2 ** ((note - 69) / 12)
        local = t[start:stop] - t[start]
        tone = sum(np.sin(2 * np.pi * freq * h * local) / h for h in (1, 2, 3))
        out[start:stop] += tone * np.exp(-local * 5)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.stack([mono, mono * 0.9], axis=1)


def write(path: Path, mono: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), stereo(mono), rate, **kwargs)
    return path


def write_manifest(folder: Path, rows: list[dict], extra_lines: list[str] = ()) -> Path:
    path = folder / "manifest.jsonl"
    lines = [json.dumps(row) for row in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def wav_with_header(path: Path, sample_rate: int, channels: int) -> Path:
    """A PCM16 WAV whose header claims ``sample_rate`` and ``channels`` over one second of data."""
    data = np.zeros(RATE, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
