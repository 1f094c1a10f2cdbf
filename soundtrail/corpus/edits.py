"""Edits a released file may go through before it is checked for the watermark.

The benchmark and the tests apply these to marked audio; each takes and returns float32 ``[C, T]`` audio at
the given sample rate (a crop returns fewer samples). MP3 goes through the system's ffmpeg (libmp3lame) over
pipes, so no temporary files are left behind.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from soundtrail.audio import resample


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def mp3_roundtrip(audio: np.ndarray, sample_rate: int, bitrate: str = "128k") -> np.ndarray:
    """Encode to MP3 with libmp3lame and decode back to float32 at the same rate and channel count."""
    channels = audio.shape[0]
    pcm = np.clip(audio.T, -1.0, 1.0).astype("<f4").tobytes()
    raw = ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels)]
    encoded = _ffmpeg([*raw, "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", "pipe:1"], pcm)
    decoded = _ffmpeg(["-f", "mp3", "-i", "pipe:0", *raw, "pipe:1"], encoded)
    return np.frombuffer(decoded, dtype="<f4").reshape(-1, channels).T.copy()


def _ffmpeg(args: list[str], stdin: bytes) -> bytes:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args],
        input=stdin, capture_output=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    return done.stdout


def resample_roundtrip(audio: np.ndarray, sample_rate: int, via_rate: int = 16_000) -> np.ndarray:
    """Down to ``via_rate`` and back: drops everything above ``via_rate / 2``."""
    back = resample(resample(audio, sample_rate, via_rate), via_rate, sample_rate)
    out = np.zeros_like(audio)
    n = min(out.shape[-1], back.shape[-1])
    out[..., :n] = back[..., :n]
    return out


def white_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise ``snr_db`` below the signal's mean power."""
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    noise = rng.standard_normal(audio.shape) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (audio + noise).astype(np.float32)


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    return (audio * 10.0 ** (db / 20.0)).astype(np.float32)


def crop(audio: np.ndarray, sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A ``seconds`` excerpt starting at a uniformly random sample (no alignment to anything)."""
    length = round(seconds * sample_rate)
    start = int(rng.integers(0, audio.shape[-1] - length + 1))
    return audio[..., start:start + length].copy()
