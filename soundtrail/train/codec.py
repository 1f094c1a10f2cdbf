"""Train soundtrail's codec (SEANet + RVQ) on random segments of audio files.

Training draws random segments of the given files, deterministically from ``(seed, step)``, so a
killed run that resumes from its last checkpoint ends bit-identical to an uninterrupted one.
Checkpoint layout of ``out_dir``::

    model.safetensors, config.json     the finished codec (config.json written last)
    steps/step-00000200/               the newest resumable state: weights, config, train_state.pt

No Prefect or Ray here: flows call these functions.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundtrail import checkpoint
from soundtrail.audio import load_mono
from soundtrail.codec.codecs import KIND, codec_id_of
from soundtrail.codec.quality import MultiScaleMelLoss
from soundtrail.models.codec import CodecConfig, NeuralCodec
from soundtrail.models.codec_discriminator import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)

STEPS_DIR = "steps"


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
