"""Codec quality: which segments are worth tokenizing, the reconstruction losses, and held-out evaluation.

Pure functions of audio and a :class:`~soundtrail.codec.codecs.Codec`; the workspace's held-out split is
:mod:`soundtrail.codec.stage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundtrail.audio import load_mono, rms_dbfs
from soundtrail.codec.codecs import Codec, bitrate_kbps


def segment_quality(audio: np.ndarray, sample_rate: int, min_seconds: float = 1.0, silence_dbfs: float = -60.0,
                    clip_fraction: float = 0.001) -> str | None:
    """Why a mono segment should be skipped by the tokenizer, or None if it is usable.

    - ``"too short"``: under ``min_seconds`` (the tail of a file): too few frames to learn from.
    - ``"non-finite"``: NaN or Inf samples would poison a batch.
    - ``"silent"``: RMS below ``silence_dbfs``; silence teaches the generators nothing and
      inflates the corpus.
    - ``"clipped"``: more than ``clip_fraction`` of the samples sit on a flat top at the peak
      (at least two equal consecutive samples at a peak of 0.99 full scale or more), or exceed full
      scale; the codec would learn the distortion. A clean sine that touches 0 dBFS is not clipped:
      it has no flat tops.
    """
    if audio.shape[-1] < min_seconds * sample_rate:
        return "too short"
    if not np.isfinite(audio).all():
        return "non-finite"
    if rms_dbfs(audio) < silence_dbfs:
        return "silent"
    magnitude = np.abs(audio)
    peak = float(magnitude.max())
    if peak > 1.0 and np.mean(magnitude > 1.0) > clip_fraction:
        return "clipped"
    if peak >= 0.99:
        at_peak = magnitude >= peak * (1 - 1e-4)
        flat = at_peak[1:] & at_peak[:-1] & (audio[1:] == audio[:-1])
        if np.count_nonzero(flat) > clip_fraction * audio.shape[-1]:
            return "clipped"
    return None


class MultiScaleMelLoss(nn.Module):
    """Mean L1 distance of log-magnitude mel spectrograms at several FFT sizes (hop n_fft/4)."""

    def __init__(self, sample_rate: int, fft_sizes: Sequence[int] = (256, 512, 1024, 2048)):
        super().__init__()
        import torchaudio

        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n, hop_length=n // 4, power=1.0,
                                                 n_mels=max(16, min(80, n // 16)))
            for n in fft_sizes
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for mel in self.mels:
            total = total + F.l1_loss(torch.log(mel(estimate).clamp(min=1e-5)), torch.log(mel(target).clamp(min=1e-5)))
        return total / len(self.mels)


def si_snr_db(estimate: np.ndarray, target: np.ndarray) -> float:
    """Scale-invariant SNR in dB of ``estimate`` against ``target`` (both zero-meaned first)."""
    target = target.astype(np.float64) - target.mean()
    estimate = estimate.astype(np.float64) - estimate.mean()
    projection = np.dot(estimate, target) / (np.dot(target, target) + 1e-12) * target
    noise = estimate - projection
    return float(10 * np.log10((np.dot(projection, projection) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def reconstruct(codec: Codec, audio: np.ndarray, n_q: int | None = None, chunk_seconds: float = 10.0) -> np.ndarray:
    """Encode and decode mono ``audio`` in chunks (bounded memory); returns the same number of samples."""
    chunk = max(1, int(chunk_seconds * codec.sample_rate))
    pieces = []
    for start in range(0, len(audio), chunk):
        wav = torch.from_numpy(np.ascontiguousarray(audio[start: start + chunk], dtype=np.float32))[None, None]
        decoded = codec.decode(codec.encode(wav, n_q))[0, 0, : wav.shape[-1]]
        pieces.append(decoded.float().cpu().numpy())
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def evaluate_codec(codec: Codec, audio_paths: Sequence[str | Path], n_q: int | None = None,
                   chunk_seconds: float = 10.0) -> dict[str, float]:
    """Reconstruction quality on held-out files: mean SI-SNR (dB), mean multi-scale mel distance, bitrate.

    Files count equally, whatever their length.
    """
    if not audio_paths:
        raise ValueError("evaluate_codec needs at least one audio file")
    mel = MultiScaleMelLoss(codec.sample_rate)
    snrs, distances, seconds = [], [], 0.0
    for path in audio_paths:
        audio = load_mono(path, codec.sample_rate)
        decoded = reconstruct(codec, audio, n_q, chunk_seconds)
        snrs.append(si_snr_db(decoded, audio))
        with torch.no_grad():
            distances.append(float(mel(torch.from_numpy(decoded)[None], torch.from_numpy(audio)[None])))
        seconds += len(audio) / codec.sample_rate
    return {
        "files": float(len(snrs)),
        "seconds": seconds,
        "n_q": float(codec.num_codebooks if n_q is None else n_q),
        "bitrate_kbps": bitrate_kbps(codec, n_q),
        "si_snr_db": float(np.mean(snrs)),
        "mel_distance": float(np.mean(distances)),
    }
