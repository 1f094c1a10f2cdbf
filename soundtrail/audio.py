"""Audio decoding, mix-down, resampling and level checks.

Decoding goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3) because the
registry's torchaudio needs torchcodec to load files. Everything returns float32 NumPy arrays
shaped ``[channels, samples]``; tensors are made only where a model needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000


class AudioError(ValueError):
    """A file that cannot be used as audio; the message is the reason shown to the user."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container header says, checked for sanity before any decoding."""

    sample_rate: int
    channels: int
    frames: int
    container: str
    codec: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: str | Path) -> AudioInfo:
    """Read and validate the header of ``path`` without decoding the samples."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"not a readable audio file: {_clean(exc)}") from exc
    if not 0 < info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"implausible sample rate in header: {info.samplerate} Hz")
    if not 0 < info.channels <= MAX_CHANNELS:
        raise AudioError(f"implausible channel count in header: {info.channels}")
    return AudioInfo(
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=max(int(info.frames), 0),
        container=str(info.format),
        codec=str(info.subtype),
    )


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 ``[channels, samples]`` and its sample rate.

    Raises :class:`AudioError` for unreadable, truncated or non-finite audio.
    """
    info = probe(path)
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"decoding failed: {_clean(exc)}") from exc
    if data.shape[0] == 0:
        raise AudioError("no audio frames could be decoded")
    if info.frames and data.shape[0] < 0.5 * info.frames:
        raise AudioError(f"truncated: decoded {data.shape[0]} of {info.frames} frames")
    if not np.isfinite(data).all():
        raise AudioError("samples contain NaN or Inf")
    return np.ascontiguousarray(data.T), int(sample_rate)


def mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: ``[C, T]`` to ``[T]``."""
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (scipy ``resample_poly``)."""
    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    up, down = _ratio(source_rate, target_rate)
    return resample_poly(audio, up, down, axis=-1).astype(np.float32)


@lru_cache(maxsize=64)
def _ratio(source_rate: int, target_rate: int) -> tuple[int, int]:
    divisor = math.gcd(source_rate, target_rate)
    return target_rate // divisor, source_rate // divisor


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode, mix down and resample: the form every model and fingerprint consumes."""
    audio, rate = decode(path)
    return resample(mono(audio), rate, sample_rate)


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return 10.0 * math.log10(power) if power > 0 else float("-inf")


def peak_normalize(audio: np.ndarray, peak: float = 0.89) -> np.ndarray:
    """Scale so the absolute peak is ``peak`` (about -1 dBFS); silence is returned unchanged."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if top == 0 else (audio * (peak / top)).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` or ``[samples]`` audio as WAV, atomically."""
    from soundtrail.atomic import atomic_path

    frames = audio.T if audio.ndim == 2 else audio
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(frames, -1.0, 1.0), sample_rate, subtype=subtype, format="WAV")


def _clean(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
