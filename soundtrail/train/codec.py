"""Train soundtrail's codec (SEANet + RVQ) on random crops of audio files, through the shared training loop.

::

    AudioCrops(paths)(step)               this rank's crops of the step's global batch, read from the files on
      |                                   demand: a pure function of (seed, step, rank), exact resume
      | CodecUnit.train_step                reconstruction (multi-scale mel + L1 + commitment), and from
      |                                     disc_start_step on the adversary: its hinge loss on real and
      |                                     reconstructed audio, the codec's adversarial + feature-matching terms;
      |                                     codec and adversary step together on the same batch
      v
    train_loop -> out_dir                   model.safetensors + config.json (the codec), train_state.pt,
                                            steps/step-N while training (see :mod:`soundtrail.train.loop`)

The discriminator and its optimizer belong to the unit (:class:`Adversary`), not to the loop: they are saved in
the train state, never in the codec's weights. Under several ranks both networks run under DDP, the codebooks
learn from every rank's batch (:mod:`soundtrail.models.codec`), and every rank draws the same number of active
codebooks for a step. Gradient accumulation averages the gradients of the micro-batches; the codebooks, which
learn by moving averages rather than gradients, update on each micro-batch. The codec trains in float32 on
every device: nearest-code search and the codebooks' running sums need its precision. No Prefect or Ray here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soundtrail import checkpoint
from soundtrail.codec.codecs import KIND, codec_id_of
from soundtrail.codec.quality import MultiScaleMelLoss
from soundtrail.data.crops import AudioBatch, AudioCrops
from soundtrail.models.codec import CodecConfig, NeuralCodec, encodec_24k
from soundtrail.models.codec_discriminator import (
    DiscriminatorConfig,
    Judgement,
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from soundtrail.train.loop import LoopConfig, Placement, StepCallback, TrainResult, step_seed, train_loop
from soundtrail.train.unit import accumulation, data_parallel, split_batch

PRESETS: dict[str, Callable[[], CodecConfig]] = {  # [model] codec; the names config.ModelSettings lists
    "cpu-16k": CodecConfig,  # the CPU-sized default: 16 kHz, 50 frames/s, 4 x 256 codes
    "encodec-24k": encodec_24k,
}


@dataclass(frozen=True)
class CodecTrainConfig:
    """How to train; CPU-sized defaults (8 x 1 s segments per step)."""

    batch_size: int = 8
    segment_seconds: float = 1.0
    learning_rate: float = 1e-3  # constant: GAN codecs train without a decay schedule
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step (batch_size must be a multiple)
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
    assets_seen: list[str]  # paths that contributed at least one crop
    assets_by_rank: list[list[str]]  # the same, for each data-parallel rank


def segment_samples(config: CodecConfig, train: CodecTrainConfig) -> int:
    """Crop length: ``segment_seconds`` rounded to whole codec frames."""
    return max(1, round(train.segment_seconds * config.sample_rate / config.hop_length)) * config.hop_length


def crops(paths: Sequence[str], config: CodecConfig, train: CodecTrainConfig, rank: int = 0,
          world_size: int = 1) -> AudioCrops:
    """The codec's training batches for one rank (lengths come from the files' headers; nothing is decoded)."""
    return AudioCrops(paths, config.sample_rate, segment_samples(config, train), train.batch_size,
                      seed=train.seed, rank=rank, world_size=world_size)


def codec_result(run: TrainResult, paths: Sequence[str], config: CodecConfig, train: CodecTrainConfig,
                 world_size: int) -> CodecTrainResult:
    """What a finished run in ``run.checkpoint_dir`` saw: the files each rank's crops came from."""
    by_rank = crops(paths, config, train, world_size=world_size).files_read(run.total_steps)
    return CodecTrainResult(run, codec_id_of(run.checkpoint_dir / checkpoint.WEIGHTS),
                            sorted({path for files in by_rank for path in files}), by_rank)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters take no gradient inside: the codec's adversarial terms train the codec only."""
    flags = [(param, param.requires_grad) for param in module.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _halves(judgements: list[Judgement], size: int) -> tuple[list[Judgement], list[Judgement]]:
    """The judgements of one forward over [real; fake] split back into (real, fake)."""
    first = [(logits[:size], [m[:size] for m in maps]) for logits, maps in judgements]
    second = [(logits[size:], [m[size:] for m in maps]) for logits, maps in judgements]
    return first, second


class Adversary:
    """The multi-scale STFT discriminator with its own AdamW, active from ``disc_start_step`` on."""

    def __init__(self, train: CodecTrainConfig):
        self.start_step = train.disc_start_step
        self.discriminator = MultiScaleSTFTDiscriminator(DiscriminatorConfig(train.disc_channels,
                                                                             train.disc_fft_sizes))
        self.judge: nn.Module = self.discriminator  # DDP-wrapped under several ranks
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=train.learning_rate,
                                           betas=train.betas, weight_decay=train.weight_decay)

    def discriminator_backward(self, real: torch.Tensor, fake: torch.Tensor, scale: float) -> float:
        """The discriminator's hinge loss on real audio and the codec's (detached) reconstruction, backpropagated
        (times ``scale``) into its gradients; real and fake go through one forward, as DDP needs."""
        real_judged, fake_judged = _halves(self.judge(torch.cat([real, fake.detach()])), len(real))
        loss = discriminator_loss(real_judged, fake_judged)
        (loss * scale).backward()
        return loss.item()

    def codec_losses(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial, feature-matching) terms of the codec's loss; gradients reach the codec only."""
        with frozen(self.discriminator):
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
    """The codec as the training loop's unit: its optimizer, its reconstruction loss and, if asked, an adversary."""

    kind = KIND

    def __init__(self, config: CodecConfig, train: CodecTrainConfig, preset: str | None = None):
        if train.batch_size % train.grad_accum:
            raise ValueError(f"batch_size {train.batch_size} is not a multiple of grad_accum {train.grad_accum}")
        self.model = NeuralCodec(config)
        self.codec_step: nn.Module = self.model  # DDP-wrapped under several ranks
        self.model_config = {"preset": preset, **dataclasses.asdict(config)}
        self.train = train
        self.settings = {key: value for key, value in dataclasses.asdict(train).items()
                         if key not in ("checkpoint_every", "seed")}  # the loop's settings, not the unit's
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.learning_rate, betas=train.betas,
                                           weight_decay=train.weight_decay)
        self.mel_loss = MultiScaleMelLoss(config.sample_rate, train.mel_fft_sizes)
        self.adversary = Adversary(train) if train.adversarial else None
        self.device = torch.device("cpu")

    def prepare(self, placement: Placement, device: torch.device) -> None:
        self.device = device
        self.model.to(device).train()
        self.mel_loss.to(device)
        if self.adversary is not None:
            self.adversary.discriminator.to(device).train()
        if placement.distributed:
            self.codec_step = data_parallel(self.model, device)
            if self.adversary is not None:
                self.adversary.judge = data_parallel(self.adversary.discriminator, device)

    def train_step(self, batch: AudioBatch, step: int, total_steps: int) -> dict[str, float]:
        train, parts = self.train, self.train.grad_accum
        adversary = self.adversary if self.adversary is not None and step >= self.adversary.start_step else None
        # every rank (and every micro-batch) quantizes with the same number of codebooks this step
        n_q = self.model.sample_n_q(torch.Generator().manual_seed(step_seed(train.seed, step, 0)))
        self.optimizer.zero_grad(set_to_none=True)
        if adversary is not None:
            adversary.optimizer.zero_grad(set_to_none=True)
        metrics: dict[str, float] = {}

        def add(name: str, value: float) -> None:
            metrics[name] = metrics.get(name, 0.0) + value / parts

        judge_syncs = (accumulation(adversary.judge, parts) if adversary is not None
                       else [contextlib.nullcontext() for _ in range(parts)])
        for chunk, codec_sync, judge_sync in zip(split_batch(batch.audio, parts), accumulation(self.codec_step, parts),
                                                 judge_syncs, strict=True):
            wav = chunk.to(self.device)[:, None]
            with codec_sync:
                out = self.codec_step(wav, n_q)
                mel = self.mel_loss(out.wav, wav)
                l1 = F.l1_loss(out.wav, wav)
                reconstruction = train.mel_weight * mel + train.l1_weight * l1 + train.commit_weight * out.commit_loss
                total = reconstruction
                if adversary is not None:
                    with judge_sync:
                        add("disc", adversary.discriminator_backward(wav, out.wav, 1.0 / parts))
                    adversarial, features = adversary.codec_losses(wav, out.wav)
                    total = reconstruction + train.adv_weight * adversarial + train.feature_weight * features
                    add("adv", adversarial.item())
                    add("feat", features.item())
                (total / parts).backward()
            add("loss", reconstruction.item())
            add("mel", mel.item())
            add("l1", l1.item())
            add("commit", out.commit_loss.item())
        if train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
        self.optimizer.step()
        if adversary is not None:
            adversary.optimizer.step()
        return {**metrics, "n_q": float(n_q)}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "adversary": self.adversary.state_dict() if self.adversary is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])


def run_codec(audio_paths: Sequence[str | Path], out_dir: str | Path, config: CodecConfig, steps: int,
              train: CodecTrainConfig, on_step: StepCallback | None, placement: Placement,
              preset: str | None = None) -> TrainResult:
    """One rank's part of a codec run (what every data-parallel worker calls); see :func:`train_codec`."""
    paths = sorted({str(p) for p in audio_paths})
    if not paths:
        raise ValueError("a codec needs at least one audio file to train on")
    loop = LoopConfig(steps=steps, checkpoint_every=train.checkpoint_every, seed=train.seed)
    torch.manual_seed(train.seed)  # the initial weights are part of the run
    unit = CodecUnit(config, train, preset)
    batches = crops(paths, config, train, placement.rank, placement.world_size)
    return train_loop(unit, batches.batches, loop, Path(out_dir), data=paths, on_step=on_step, placement=placement,
                      metadata={"sample_rate": config.sample_rate, "frame_rate": config.frame_rate})


def train_codec(audio_paths: Sequence[str | Path], out_dir: str | Path, config: CodecConfig | None = None,
                steps: int = 1000, train: CodecTrainConfig | None = None, on_step: StepCallback | None = None,
                preset: str | None = None) -> CodecTrainResult:
    """Train (or resume, or just report) a codec on random crops of ``audio_paths``, in this process.

    Running it again with the same arguments returns the finished result without training; after a kill it
    continues from the newest checkpoint; more steps extend a finished run. ``on_step(step, loss)`` is called
    after each step (loss: the reconstruction loss). ``config`` defaults to the ``preset``'s (default cpu-16k);
    the preset's name is recorded with the config.
    """
    config = config or PRESETS[preset or "cpu-16k"]()
    train = train or CodecTrainConfig()
    paths = sorted({str(p) for p in audio_paths})
    run = run_codec(paths, out_dir, config, steps, train, on_step, Placement(), preset)
    return codec_result(run, paths, config, train, world_size=1)
