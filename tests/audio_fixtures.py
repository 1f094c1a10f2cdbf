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


def sign_training_mining(source: Path, signed: Path, entries: dict[str, str], identity_dir: Path,
                         label: str = "cawg.training-mining") -> Path:
    """``source`` (WAV, FLAC or MP3) with signed Content Credentials carrying a training-and-data-mining assertion.

    ``entries`` maps entry keys to their ``use`` (``{"cawg.ai_generative_training": "notAllowed"}``); the
    signer is the workspace-style demo CA made in ``identity_dir``.
    """
    import c2pa

    from soundtrail.provenance.credentials import ensure_signing_identity

    identity = ensure_signing_identity(identity_dir)
    mime = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg"}[source.suffix.lower()]
    manifest = {
        "claim_generator_info": [{"name": "soundtrail tests", "version": "1"}],
        "title": signed.name,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]}},
            {"label": label, "data": {"entries": {
                key: {"use": use, **({"constraint_info": "ask the label"} if use == "constrained" else {})}
                for key, use in entries.items()}}},
        ],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
        identity.alg.encode(), identity.cert_chain_pem_path.read_bytes(), identity.key_pem_path.read_bytes(), None))
    with c2pa.Builder(manifest) as builder, open(source, "rb") as stream, open(signed, "w+b") as out:
        builder.sign(signer, mime, stream, out)
    signer.close()
    return signed
