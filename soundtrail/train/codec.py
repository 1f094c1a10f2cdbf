"""Train soundtrail's codec (SEANet + RVQ) on random segments of audio files, through the shared training loop.

::

    SegmentBatches(paths)(start_step)     random segments, a pure function of (seed, step): exact resume
      | CodecUnit.train_step                reconstruction (multi-scale mel + L1 + commitment), and from
      |                                     disc_start_step on the adversary: discriminator step, then
      |                                     adversarial + feature-matching terms for the codec
      v
    train_loop -> out_dir                   model.safetensors + config.json (the codec), train_state.pt,
                                            steps/step-N while training (see :mod:`soundtrail.train.loop`)

The discriminator and its optimizer belong to the unit (:class:`Adversary`), not to the loop: they are saved in
the train state, never in the codec's weights. No Prefect or Ray here: flows call these functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
from soundtrail.train.loop import LoopConfig, StepCallback, TrainResult, train_loop


@dataclass(frozen=True)
class CodecTrainConfig:
    """How to train; CPU-sized defaults (8 x 1 s segments per step)."""

    batch_size: int = 8
    segment_seconds: float = 1.0
    learning_rate: float = 1e-3  # constant: GAN codecs train without a decay schedule
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
    run: TrainResult
    codec_id: str  # sha256 of out_dir/model.safetensors, first 16 hex digits
    assets_seen: list[str]  # paths that contributed at least one segment


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



@dataclass(frozen=True)
class CodecBatch:
    audio: torch.Tensor  # [B, segment] float32
    files: list[int]  # which file each row was cut from


class SegmentBatches:
    """``make_batches`` for the codec: ``batch_size`` random segments of the files at every step.

    The audio is decoded when training starts, not for a run that turns out to be finished.
    """

    def __init__(self, paths: Sequence[str], sample_rate: int, segment: int, batch_size: int, seed: int):
        self.paths, self.sample_rate, self.segment = list(paths), sample_rate, segment
        self.batch_size, self.seed = batch_size, seed

    def __call__(self, start: int) -> Iterator[CodecBatch]:
        audio = [load_mono(path, self.sample_rate) for path in self.paths]
        lengths = [len(a) for a in audio]
        step = start
        while True:
            picks = sample_segments(lengths, self.segment, self.batch_size, self.seed, step)
            yield CodecBatch(torch.from_numpy(_batch(audio, picks, self.segment)), [index for index, _ in picks])
            step += 1


class Adversary:
    """The multi-scale STFT discriminator with its own AdamW, active from ``disc_start_step`` on."""

    def __init__(self, train: CodecTrainConfig):
        self.start_step = train.disc_start_step
        self.discriminator = MultiScaleSTFTDiscriminator(DiscriminatorConfig(train.disc_channels,
                                                                             train.disc_fft_sizes))
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=train.learning_rate,
                                           betas=train.betas, weight_decay=train.weight_decay)

    def train_discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One step of the discriminator on real audio and the codec's (detached) reconstruction."""
        loss = discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def codec_losses(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial, feature-matching) terms of the codec's loss; gradients reach the codec only."""
        with torch.no_grad():
            judged_real = self.discriminator(real)
        judged_fake = self.discriminator(fake)
        return generator_loss(judged_fake), feature_matching_loss(judged_real, judged_fake)

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])


class CodecUnit:
    """The codec as the training loop's unit: its optimizer, its reconstruction loss and, if asked, an adversary.

    It also counts which files its batches came from: the ledger records only the assets that trained the codec.
    """

    kind = KIND

    def __init__(self, config: CodecConfig, train: CodecTrainConfig):
        self.model = NeuralCodec(config)
        self.model_config = config
        self.train = train
        self.settings = {key: value for key, value in dataclasses.asdict(train).items()
                         if key not in ("checkpoint_every", "seed")}  # the loop's settings, not the unit's
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.learning_rate, betas=train.betas,
                                           weight_decay=train.weight_decay)
        self.mel_loss = MultiScaleMelLoss(config.sample_rate, train.mel_fft_sizes)
        self.adversary = Adversary(train) if train.adversarial else None
        self.files_seen: set[int] = set()
        self.device = torch.device("cpu")

    def prepare(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device).train()
        self.mel_loss.to(device)
        if self.adversary is not None:
            self.adversary.discriminator.to(device).train()

    def train_step(self, batch: CodecBatch, step: int, total_steps: int) -> dict[str, float]:
        train = self.train
        wav = batch.audio.to(self.device)[:, None]
        out = self.model(wav)
        mel = self.mel_loss(out.wav, wav)
        l1 = F.l1_loss(out.wav, wav)
        reconstruction = train.mel_weight * mel + train.l1_weight * l1 + train.commit_weight * out.commit_loss
        metrics = {"loss": reconstruction.item(), "mel": mel.item(), "l1": l1.item(),
                   "commit": out.commit_loss.item(), "n_q": float(out.n_q)}
        total = reconstruction
        if self.adversary is not None and step >= self.adversary.start_step:
            metrics["disc"] = self.adversary.train_discriminator(wav, out.wav)
            adversarial, features = self.adversary.codec_losses(wav, out.wav)
            total = reconstruction + train.adv_weight * adversarial + train.feature_weight * features
            metrics.update(adv=adversarial.item(), feat=features.item())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
        self.optimizer.step()
        self.files_seen.update(batch.files)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "files_seen": sorted(self.files_seen),
                "adversary": self.adversary.state_dict() if self.adversary is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.files_seen = set(state["files_seen"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])


def train_codec(audio_paths: Sequence[str | Path], out_dir: str | Path, config: CodecConfig | None = None,
                steps: int = 1000, train: CodecTrainConfig | None = None,
                on_step: StepCallback | None = None) -> CodecTrainResult:
    """Train (or resume, or just report) a codec on random segments of ``audio_paths``.

    Running it again with the same arguments returns the finished result without training; after a kill it
    continues from the newest checkpoint under ``out_dir/steps``; more steps extend a finished run. ``on_step(step,
    loss)`` is called after each step (loss: the reconstruction loss). Seeds torch's global RNG with ``train.seed``.
    """
    config = config or CodecConfig()
    train = train or CodecTrainConfig()
    out_dir = Path(out_dir)
    paths = sorted({str(p) for p in audio_paths})
    if not paths:
        raise ValueError("train_codec needs at least one audio file")
    loop = LoopConfig(steps=steps, checkpoint_every=train.checkpoint_every, seed=train.seed)
    segment = max(1, round(train.segment_seconds * config.sample_rate / config.hop_length)) * config.hop_length
    torch.manual_seed(train.seed)  # the initial weights are part of the run
    unit = CodecUnit(config, train)
    batches = SegmentBatches(paths, config.sample_rate, segment, train.batch_size, train.seed)
    result = train_loop(unit, batches, loop, out_dir, data=paths, on_step=on_step,
                        metadata={"sample_rate": config.sample_rate, "frame_rate": config.frame_rate})
    return CodecTrainResult(result, codec_id_of(out_dir / checkpoint.WEIGHTS),
                            [paths[index] for index in sorted(unit.files_seen)])
