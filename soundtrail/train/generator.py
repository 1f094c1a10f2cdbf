"""The generator family contract: what every family (AR, diffusion, the next one) provides, and what it works on.

::

    family.presets: {name: config factory}                                    the sizes ``[model] <family>`` names
    family.train(data, settings, checkpoint_dir, on_step, placement) -> TrainResult
                                                                              one rank's training, through
                                                                              train/loop.py
    family.load(checkpoint_dir, device) -> network                            in eval mode
    family.generate(network, codec, prompt, frames, seed, sampling) -> Sampled     audio (and codes, if tokens)

``train`` runs once per data-parallel rank (``placement``: which rank of how many, its device, its checkpoint
store); it builds the same model on every rank and reads the rank's own batches, and the loop and the unit do
the rest.

Where a run's weights begin is decided by the stage (:mod:`soundtrail.train.start`) and handed to the family in
its settings: ``settings.init``, a finished checkpoint of the same family to continue from (the new model's
parent), or else the family's fresh start: new random weights of its preset, or ``settings.base``, the
pretrained model a fine-tuning family (``fine_tunes``; no presets, its size is its base model's) starts from.

The registry (name -> family) is :mod:`soundtrail.train.families`; the stage code that picks the shards and
records the model is :mod:`soundtrail.train.stage`. A family sees neither the workspace nor the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from soundtrail.codec.codecs import Codec
from soundtrail.config import ModelSettings, TrainSettings
from soundtrail.data.dataset import ShardStream
from soundtrail.data.location import Location
from soundtrail.data.shards import CodecInfo
from soundtrail.train.loop import LoopConfig, Placement, StepCallback, TrainResult
from soundtrail.train.unit import OptimizerConfig


@dataclass(frozen=True)
class TrainingData:
    """The shard files a model will read, their sha256s, and the codec that made them."""

    codec_id: str
    codec_path: str
    codec: CodecInfo
    files: list[Location]
    shard_ids: list[str]


@dataclass(frozen=True)
class BaseModel:
    """A pretrained model in a local folder that a fine-tuning family starts from, and how it is adapted."""

    path: str
    id: str  # the digest of its weights (the ledger's base_models id): a changed folder is another base model
    lora_rank: int = 0  # 0: every weight trains; r > 0: LoRA adapters of rank r instead
    learning_rate: float = 1e-5  # the fine-tuning's own, in place of GeneratorSettings.learning_rate


@dataclass(frozen=True)
class GeneratorSettings:
    """How one training run reads the shards and optimises (``[train]`` in soundtrail.toml; steps per family) and
    the model's size (its preset, ``[model]``)."""

    steps: int
    batch_size: int  # examples per optimizer step on each rank
    learning_rate: float
    crop_seconds: float
    text_encoder: str
    seed: int
    preset: str | None = "tiny"  # None: a fine-tuning family's, whose size is its base model's
    grad_accum: int = 1
    ema_decay: float = 0.0
    loader_workers: int = 0  # how the batches are read, not what they are: no part of the run's identity
    init: str | None = None  # a finished checkpoint of the family whose weights this run starts from (its parent)
    base: BaseModel | None = None  # the pretrained model a fine-tuning family starts from when ``init`` is None

    def loop(self) -> LoopConfig:
        return LoopConfig(steps=self.steps, checkpoint_every=max(25, self.steps // 4),
                          log_every=max(10, self.steps // 10), seed=self.seed)

    def optimizer(self) -> OptimizerConfig:
        return OptimizerConfig(lr=self.learning_rate, min_lr=self.learning_rate / 10,
                               warmup_steps=min(50, self.steps // 10), grad_accum=self.grad_accum,
                               ema_decay=self.ema_decay)

    def stream(self, data: TrainingData, placement: Placement | None = None) -> ShardStream:
        """Random crops of ``crop_seconds`` from the shard segments for ``placement``'s rank (default: the whole
        stream of a single process), the same for every family."""
        placement = placement or Placement()
        return ShardStream(data.files, self.frames(data), self.batch_size, seed=self.seed, rank=placement.rank,
                           world_size=placement.world_size)

    def frames(self, data: TrainingData) -> int:
        """Codec frames in one training crop."""
        return max(8, int(self.crop_seconds * data.codec.frame_rate))

    def batches(self, data: TrainingData, placement: Placement, start_step: int) -> Iterator[dict[str, Any]]:
        """The rank's batches from ``start_step`` on, read by ``loader_workers`` DataLoader processes (or here)."""
        return self.stream(data, placement).batches(start_step, self.loader_workers)

    def shards_read(self, data: TrainingData, world_size: int) -> list[list[str]]:
        """For each rank, the sha256s of the shards its batches came from over the whole run."""
        ids = dict(zip(data.files, data.shard_ids, strict=True))
        return [[ids[path] for path in self.stream(data, Placement(rank, world_size)).shards_read(self.steps)]
                for rank in range(world_size)]


@dataclass(frozen=True)
class Sampling:
    """How to sample; a family uses what applies to it."""

    cfg_scale: float = 3.0  # classifier-free guidance
    steps: int = 16  # integration steps, for families whose ``sampling_steps`` is true


@dataclass(frozen=True)
class Sampled:
    wav: torch.Tensor  # [1, 1, T] on the codec's device
    codes: np.ndarray | None  # int16 [K, F] when the family generated tokens of the shards' codec


class GeneratorFamily(Protocol):
    """One way to generate music from text, trained on the token shards."""

    name: str  # the registry key, the checkpoints' and the ledger's ``kind``
    sampling_steps: bool  # whether Sampling.steps trades speed for quality (what `eval compare` sweeps)
    presets: Mapping[str, Callable[..., Any]]  # model sizes by name: what [model] may name (none if fine_tunes)
    fine_tunes: bool  # starts from a pretrained base model ([base_models.<name>]) rather than random weights

    def default_steps(self, train: TrainSettings) -> int:
        """Training steps when the command names none (the family's key in ``[train]``)."""
        ...

    def preset(self, model: ModelSettings) -> str | None:
        """The model size the workspace asks for (the family's key in ``[model]``; None for a fine-tuning
        family)."""
        ...

    def text_encoder_id(self, settings: GeneratorSettings) -> str:
        """The id of the text encoder a run with ``settings`` reads captions with (recorded with the model; a run
        continues only from a model that read them the same way)."""
        ...

    def baselines(self, data: TrainingData) -> dict[str, float]:
        """Losses to read the training loss against, recorded with the model's metrics."""
        ...

    def train(self, data: TrainingData, settings: GeneratorSettings, checkpoint_dir: Path,
              on_step: StepCallback | None, placement: Placement) -> TrainResult:
        """Train (or resume, or find finished) a model in ``checkpoint_dir`` through the shared loop, as
        ``placement``'s rank, from the weights of ``settings.init`` when it is set (see the module docstring)."""
        ...

    def load(self, checkpoint_dir: Path, device: torch.device | str) -> Any:
        """The trained network of a finished checkpoint, in eval mode on ``device``."""
        ...

    def generate(self, network: Any, codec: Codec, prompt: str, frames: int, seed: int,
                 sampling: Sampling) -> Sampled:
        """``frames`` codec frames of audio for ``prompt``; the same seed gives the same audio."""
        ...
