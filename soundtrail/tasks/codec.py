"""Codec stage: train soundtrail's codec, load any codec behind one interface, encode and evaluate.

Everything the tokenizer and the generators need from a codec goes through :class:`Codec`::

    codec = load_codec(path)            # a soundtrail checkpoint dir, or a transformers EncodecModel dir
    codes = encode_segments(codec, segments [N, T] float32, batch_size)   -> int16 [N, K, F]
    codec.dequantize(codes) -> latents [B, D, F]      (what the diffusion model generates)
    codec.decode(codes) / codec.decode_latents(latents) -> wav [B, 1, F * hop]

Training (:func:`train_codec`) draws random segments of the given files, deterministically from
``(seed, step)``, so a killed run that resumes from its last checkpoint ends bit-identical to an
uninterrupted one. Checkpoint layout of ``out_dir``::

    model.safetensors, config.json     the finished codec (config.json written last)
    steps/step-00000200/               the newest resumable state: weights, config, train_state.pt

No Prefect or Ray here: flows call these functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.audio import load_mono, rms_dbfs
from soundtrail.models.codec import CodecConfig, NeuralCodec
from soundtrail.models.codec_discriminator import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)

KIND = "codec"
STEPS_DIR = "steps"


# ---------------------------------------------------------------------------------------------------------------
# One interface for every codec
# ---------------------------------------------------------------------------------------------------------------


@runtime_checkable
class Codec(Protocol):
    """What the tokenizer and generators use. Tensors in and out; audio is mono [B, 1, T] float."""

    codec_id: str  # first 16 hex digits of the weights file's sha256
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    latent_dim: int
    device: torch.device

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """[B,1,T] -> LongTensor [B,n_q,ceil(T/hop)]; ``n_q`` defaults to all codebooks."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor: ...

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor: ...


def bitrate_kbps(codec: Codec, n_q: int | None = None) -> float:
    """Bits per second of the codes: n_q * log2(codebook_size) * frame_rate / 1000."""
    n_q = codec.num_codebooks if n_q is None else n_q
    return n_q * math.log2(codec.codebook_size) * codec.frame_rate / 1000.0


def codec_id_of(weights: Path) -> str:
    return sha256_file(weights)[:16]


class SoundtrailCodec:
    """A trained :class:`NeuralCodec` frozen for serving: weight norm folded, eval mode, no autograd.

    ``encode``/``decode`` run under ``torch.inference_mode``; ``dequantize`` runs under ``no_grad``
    so its latents can be training targets for the diffusion model (inference tensors cannot).
    """

    def __init__(self, model: NeuralCodec, codec_id: str, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else checkpoint.pick_device()
        self.model = model.inference_copy().to(self.device)
        self.codec_id = codec_id
        self.config = model.config
        self.sample_rate = model.sample_rate
        self.frame_rate = model.frame_rate
        self.num_codebooks = model.num_codebooks
        self.codebook_size = model.codebook_size
        self.latent_dim = model.latent_dim

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        return self.model.encode(wav.to(self.device, torch.float32), n_q)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes.to(self.device, torch.long))

    @torch.no_grad()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.dequantize(codes.to(self.device, torch.long))

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_latents(latents.to(self.device, torch.float32))


class EncodecAdapter:
    """A ``transformers.EncodecModel`` (e.g. a local copy of facebook/encodec_24khz) as a :class:`Codec`.

    Only single-pass mono models fit the token shards: ``normalize=True`` keeps a per-chunk scale
    outside the codes and ``chunk_length_s`` overlaps chunks, so both are refused.
    """

    def __init__(self, model: Any, codec_id: str, device: torch.device | str | None = None):
        config = model.config
        if config.audio_channels != 1:
            raise ValueError("only mono EnCodec models can tokenize the corpus")
        if config.normalize or config.chunk_length_s is not None:
            raise ValueError("EnCodec models with normalize=True or chunking keep state outside the codes; "
                             "use a 24 kHz-style single-pass model")
        self.device = torch.device(device) if device is not None else checkpoint.pick_device()
        self.model = model.eval().to(self.device)
        self.codec_id = codec_id
        self.sample_rate = int(config.sampling_rate)
        self.frame_rate = float(config.frame_rate)
        self.num_codebooks = int(config.num_quantizers)
        self.codebook_size = int(config.codebook_size)
        self.latent_dim = int(config.codebook_dim)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n_q = self.num_codebooks if n_q is None else n_q
        if not 1 <= n_q <= self.num_codebooks:
            raise ValueError(f"n_q must be in [1, {self.num_codebooks}], got {n_q}")
        bandwidth = (n_q + 0.5) * bitrate_kbps(self, 1)  # EnCodec floors bandwidth / per-codebook rate
        latents = self.model.encoder(wav.to(self.device, torch.float32))
        return self.model.quantizer.encode(latents, bandwidth).transpose(0, 1)

    @torch.no_grad()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.quantizer.decode(codes.to(self.device, torch.long).transpose(0, 1))

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decoder(latents.to(self.device, torch.float32))

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_latents(self.dequantize(codes))


def load_codec(path: str | Path, device: torch.device | str | None = None) -> Codec:
    """Load a soundtrail codec checkpoint dir or a local ``EncodecModel.save_pretrained`` dir."""
    path = Path(path)
    config_path = path / checkpoint.CONFIG
    if not config_path.exists():
        raise FileNotFoundError(f"no codec at {path}: {checkpoint.CONFIG} missing")
    document = json.loads(config_path.read_text())
    weights = path / checkpoint.WEIGHTS
    if document.get("kind") == KIND:
        model = NeuralCodec.to_load_into(CodecConfig.from_dict(document["config"]))
        model.load_state_dict(load_file(str(weights)), assign=True)
        return SoundtrailCodec(model, codec_id_of(weights), device)
    if document.get("model_type") == "encodec":
        from transformers import EncodecModel

        model = EncodecModel.from_pretrained(str(path), local_files_only=True)
        return EncodecAdapter(model, codec_id_of(weights), device)
    raise ValueError(f"{config_path} describes neither a soundtrail codec nor a transformers EncodecModel")


def encode_segments(codec: Codec, segments: np.ndarray, batch_size: int = 16, n_q: int | None = None) -> np.ndarray:
    """Encode equal-length mono segments [N, T] in batches -> int16 codes [N, n_q, F] (the shard dtype)."""
    if segments.ndim != 2:
        raise ValueError(f"segments must be [N, T], got shape {segments.shape}")
    if codec.codebook_size > np.iinfo(np.int16).max + 1:
        raise ValueError(f"codebook_size {codec.codebook_size} does not fit int16 codes")
    chunks = []
    for start in range(0, len(segments), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(segments[start: start + batch_size], dtype=np.float32))
        chunks.append(codec.encode(batch[:, None], n_q).cpu().numpy().astype(np.int16))
    if not chunks:
        frames = math.ceil(segments.shape[1] * codec.frame_rate / codec.sample_rate)
        return np.zeros((0, codec.num_codebooks if n_q is None else n_q, frames), dtype=np.int16)
    return np.concatenate(chunks)


# ---------------------------------------------------------------------------------------------------------------
# Which segments are worth tokenizing
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Losses and metrics
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class CodecTrainConfig:
    """How to train; CPU-sized defaults (8 x 1 s segments per step)."""

    batch_size: int = 8
    segment_seconds: float = 1.0
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    mel_weight: float = 1.0
    l1_weight: float = 5.0  # waveform term: without it log-mel alone leaves phase free (SI-SNR far below 0)
    commit_weight: float = 1.0
    mel_fft_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    adversarial: bool = False  # multi-scale STFT discriminator: better texture, slower steps
    adv_weight: float = 0.1
    feature_weight: float = 0.2
    disc_start_step: int = 0
    disc_channels: int = 32
    disc_fft_sizes: tuple[int, ...] = (1024, 512, 256)
    checkpoint_every: int = 200
    seed: int = 0


@dataclass(frozen=True)
class CodecTrainResult:
    out_dir: Path
    codec_id: str  # sha256 of out_dir/model.safetensors, first 16 hex digits
    steps: int
    resumed_from: int  # step the run continued from; 0 for a fresh run, == steps when already finished
    initial_loss: float  # reconstruction loss (mel + L1 + commitment, weighted) of the first step
    final_loss: float  # mean reconstruction loss of the last tenth of the steps
    assets_seen: list[str] = field(default_factory=list)  # paths that contributed at least one segment
    device: str = "cpu"


StepCallback = Callable[[int, dict[str, float]], None]


def sample_segments(lengths: Sequence[int], segment: int, batch_size: int, seed: int, step: int
                    ) -> list[tuple[int, int]]:
    """(file index, start sample) for each item of the batch at ``step``: a pure function of (seed, step).

    Files are drawn in proportion to their length, so every second of audio is equally likely.
    """
    rng = np.random.default_rng([seed, step])
    weights = np.asarray(lengths, dtype=np.float64)
    files = rng.choice(len(lengths), size=batch_size, p=weights / weights.sum())
    return [(int(f), int(rng.integers(0, max(1, lengths[f] - segment + 1)))) for f in files]


def _batch(audio: list[np.ndarray], picks: list[tuple[int, int]], segment: int) -> np.ndarray:
    out = np.zeros((len(picks), segment), dtype=np.float32)
    for row, (index, start) in enumerate(picks):
        piece = audio[index][start: start + segment]
        out[row, : len(piece)] = piece
    return out


def _run_identity(config: CodecConfig, train: CodecTrainConfig, paths: list[str]) -> dict[str, Any]:
    """What must match for a checkpoint to be continued (JSON-normalised: tuples become lists)."""
    return json.loads(json.dumps({"config": dataclasses.asdict(config), "train": dataclasses.asdict(train),
                                  "assets": paths}))


def _check_same_run(directory: Path, identity: dict[str, Any]) -> dict[str, Any]:
    document = checkpoint.read_config(directory)
    found = {"config": document["config"], "train": document.get("train"), "assets": document.get("assets")}
    if found != identity:
        raise ValueError(f"{directory} holds a codec run with a different config, training settings or "
                         "file list; train into a new directory")
    return document


def _latest_step_dir(out_dir: Path) -> Path | None:
    finished = [d for d in sorted((out_dir / STEPS_DIR).glob("step-*")) if checkpoint.is_complete(d)]
    return finished[-1] if finished else None


def _summary(losses: list[float]) -> tuple[float, float]:
    tail = max(1, len(losses) // 10)
    return losses[0], float(np.mean(losses[-tail:]))


def train_codec(audio_paths: Sequence[str | Path], out_dir: str | Path, config: CodecConfig | None = None,
                steps: int = 1000, train: CodecTrainConfig | None = None,
                on_step: StepCallback | None = None) -> CodecTrainResult:
    """Train (or resume, or just report) a codec on random segments of ``audio_paths``.

    Running it again with the same arguments returns the finished result without training; after
    a kill it continues from the newest checkpoint under ``out_dir/steps``. ``on_step(step,
    metrics)`` is called after each step (and after that step's checkpoint, if any). Seeds torch's
    global RNG with ``train.seed``.
    """
    config = config or CodecConfig()
    train = train or CodecTrainConfig()
    out_dir = Path(out_dir)
    paths = sorted({str(p) for p in audio_paths})
    if not paths:
        raise ValueError("train_codec needs at least one audio file")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    identity = _run_identity(config, train, paths)
    device = checkpoint.pick_device()

    if checkpoint.is_complete(out_dir):
        document = _check_same_run(out_dir, identity)
        if document["step"] == steps:
            return CodecTrainResult(out_dir, codec_id_of(out_dir / checkpoint.WEIGHTS), steps, steps,
                                    document["initial_loss"], document["final_loss"], document["assets_seen"],
                                    str(device))

    audio = [load_mono(p, config.sample_rate) for p in paths]
    lengths = [len(a) for a in audio]
    segment = max(1, round(train.segment_seconds * config.sample_rate / config.hop_length)) * config.hop_length

    torch.manual_seed(train.seed)
    model = NeuralCodec(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, betas=train.betas,
                                  weight_decay=train.weight_decay)
    discriminator = disc_optimizer = None
    if train.adversarial:
        discriminator = MultiScaleSTFTDiscriminator(
            DiscriminatorConfig(train.disc_channels, train.disc_fft_sizes)).to(device).train()
        disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=train.learning_rate, betas=train.betas,
                                           weight_decay=train.weight_decay)
    mel_loss = MultiScaleMelLoss(config.sample_rate, train.mel_fft_sizes).to(device)

    start, losses, seen = 0, [], [0] * len(paths)
    resume = _latest_step_dir(out_dir)
    if resume is not None:
        _check_same_run(resume, identity)
        checkpoint.load_weights(resume, model, device)
        state = checkpoint.load_train_state(resume, optimizer)
        start, losses, seen = state["step"], state["extra"]["losses"], state["extra"]["seen"]
        if discriminator is not None:
            discriminator.load_state_dict(state["extra"]["discriminator"])
            disc_optimizer.load_state_dict(state["extra"]["disc_optimizer"])
    if start > steps:
        raise ValueError(f"{out_dir} already holds {start} steps, more than the {steps} asked for")

    for step in range(start, steps):
        picks = sample_segments(lengths, segment, train.batch_size, train.seed, step)
        for index, _ in picks:
            seen[index] += 1
        wav = torch.from_numpy(_batch(audio, picks, segment)).to(device)[:, None]
        out = model(wav)
        mel = mel_loss(out.wav, wav)
        l1 = F.l1_loss(out.wav, wav)
        recon = train.mel_weight * mel + train.l1_weight * l1 + train.commit_weight * out.commit_loss
        metrics = {"loss": recon.item(), "mel": mel.item(), "l1": l1.item(), "commit": out.commit_loss.item(),
                   "n_q": float(out.n_q)}
        total = recon
        if discriminator is not None and step >= train.disc_start_step:
            d_loss = discriminator_loss(discriminator(wav), discriminator(out.wav.detach()))
            disc_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_optimizer.step()
            with torch.no_grad():
                real = discriminator(wav)
            fake = discriminator(out.wav)
            adv, feat = generator_loss(fake), feature_matching_loss(real, fake)
            total = recon + train.adv_weight * adv + train.feature_weight * feat
            metrics.update(disc=d_loss.item(), adv=adv.item(), feat=feat.item())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if train.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        losses.append(metrics["loss"])

        done = step + 1
        if done % train.checkpoint_every == 0 or done == steps:
            extra: dict[str, Any] = {"losses": losses, "seen": seen}
            if discriminator is not None:
                extra.update(discriminator=discriminator.state_dict(), disc_optimizer=disc_optimizer.state_dict())
            _save_step(out_dir, done, model, optimizer, config, identity, extra)
        if on_step is not None:
            on_step(done, metrics)

    initial, final = _summary(losses)
    assets_seen = [p for p, count in zip(paths, seen, strict=True) if count]
    checkpoint.save_weights(out_dir, model, KIND, config, train=identity["train"], assets=paths, step=steps,
                            initial_loss=initial, final_loss=final, assets_seen=assets_seen,
                            sample_rate=config.sample_rate, frame_rate=config.frame_rate)
    return CodecTrainResult(out_dir, codec_id_of(out_dir / checkpoint.WEIGHTS), steps, start, initial, final,
                            assets_seen, str(device))


def _save_step(out_dir: Path, step: int, model: NeuralCodec, optimizer: torch.optim.Optimizer, config: CodecConfig,
               identity: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write steps/step-N (train state first, config.json last), then drop older step dirs."""
    directory = out_dir / STEPS_DIR / f"step-{step:08d}"
    if directory.exists():  # an unfinished leftover of a killed run
        shutil.rmtree(directory)
    checkpoint.save_train_state(directory, step, optimizer, **extra)
    checkpoint.save_weights(directory, model, KIND, config, train=identity["train"], assets=identity["assets"],
                            step=step)
    for older in (out_dir / STEPS_DIR).glob("step-*"):
        if older != directory:
            shutil.rmtree(older)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------


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
