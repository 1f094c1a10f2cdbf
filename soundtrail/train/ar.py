"""The autoregressive family: train on ``(codes [B,K,T], texts)`` batches, load it back, generate tokens.

The unit that trains and checkpoints is :class:`TextConditionedAR`: the transformer plus, when it learns, the text
encoder. A frozen MiniLM is kept out of the state dict (its weights ship in its package); the checkpoint's
config.json names it by ``text_encoder`` id, so lineage shows which encoder a model was trained with and
:func:`load_ar` refuses a different one.

Where the batches come from is the caller's business (shards, in practice): ``make_batches(start_step)`` must give
the batches from that step on, the same ones every time, so that a resumed run is exact.
:func:`batches_from_examples` makes such a source from examples held in memory. :class:`ARFamily` is the family
contract (:mod:`soundtrail.train.generator`) over these: it trains on crops of the shards' codes and generates
codes the shards' codec decodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from soundtrail import checkpoint
from soundtrail.codec.codecs import Codec
from soundtrail.config import ModelSettings, TrainSettings
from soundtrail.models.ar import ARConfig, ARModel, ar_loss, ar_small, musicgen_small
from soundtrail.models.conditioning import (
    FrozenMiniLMEncoder,
    LearnedTextConfig,
    LearnedTextEncoder,
    TextEncoder,
    build_text_encoder,
    encoder_id_for,
)
from soundtrail.train.generator import GeneratorSettings, Sampled, Sampling, TrainingData
from soundtrail.train.loop import LoopConfig, Placement, StepCallback, TrainResult, train_loop
from soundtrail.train.unit import LossUnit, OptimizerConfig

KIND = "ar"
PRESETS: dict[str, Callable[..., ARConfig]] = {  # (n_codebooks=, codebook_size=, cond_dim=) -> the architecture
    "tiny": ARConfig,  # the CPU-sized default
    "small": ar_small,
    "musicgen-small": musicgen_small,
}
MAX_GENERATION_SECONDS = 30.0  # the position table covers this much audio
ARBatch = tuple[torch.Tensor, list[str]]  # codes [B,K,T], captions; a third item, lengths [B], marks padding


class TextConditionedAR(nn.Module):
    """An :class:`ARModel` with its text encoder: encodes captions, computes the loss, generates from strings."""

    def __init__(self, ar: ARModel, encoder: TextEncoder):
        super().__init__()
        if ar.config.cond_dim != encoder.dim:
            raise ValueError(f"the model reads {ar.config.cond_dim}-wide text, the encoder gives {encoder.dim}")
        self.ar = ar
        if encoder.trainable:
            self.text = encoder
        else:  # held in a list: outside parameters() and state_dict(), its weights come from its package
            self._frozen = [encoder]

    @property
    def encoder(self) -> TextEncoder:
        return self.text if hasattr(self, "text") else self._frozen[0]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> (cond [B,L,Dc], cond_mask [B,L]) on the model's device."""
        encoder, device = self.encoder, self.ar.device
        if not encoder.trainable and next(encoder.parameters()).device != device:
            encoder.to(device)
        cond, mask = encoder(list(texts))
        return cond.to(device), mask.to(device)

    def loss(self, codes: torch.Tensor, texts: Sequence[str], lengths: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`ar_loss` on codes [B,K,T] for their captions; ``lengths`` [B] for padded rows."""
        cond, mask = self.encode(texts)
        return ar_loss(self.ar, codes.to(self.ar.device), cond, mask, lengths)

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], frames: int, **sampling: Any) -> torch.Tensor:
        """Codes [B,K,frames] for captions; ``sampling`` goes to :meth:`ARModel.generate` (cfg_scale, generator...)."""
        cond, mask = self.encode(texts)
        return self.ar.generate(cond, mask, frames, **sampling)


def text_encoder_metadata(encoder: TextEncoder) -> dict[str, Any]:
    """What config.json records about the text encoder: its id, and the learned encoder's settings."""
    document: dict[str, Any] = {"text_encoder": encoder.encoder_id}
    if isinstance(encoder, LearnedTextEncoder):
        document["text_encoder_config"] = dataclasses.asdict(encoder.config)
    return document


def ar_batch_loss(model: TextConditionedAR, batch: ARBatch) -> torch.Tensor:
    return model.loss(*batch)


def train_ar(make_batches: Callable[[int], Iterator[ARBatch]], checkpoint_dir: str | Path,
             config: ARConfig | None = None, loop: LoopConfig | None = None,
             optimizer: OptimizerConfig | None = None, text_encoder: str | TextEncoder = "auto",
             metadata: dict[str, Any] | None = None, on_step: StepCallback | None = None,
             placement: Placement | None = None, preset: str | None = None,
             init: str | Path | None = None) -> TrainResult:
    """Train (or resume, or just report) an AR generator; ``config.cond_dim`` is set to the encoder's width.

    ``text_encoder`` is a kind for :func:`build_text_encoder` (``auto``, ``minilm``, ``learned``) or an encoder.
    ``metadata`` goes into the checkpoint (e.g. the shards read); the encoder's id is added to it. ``preset``
    (the name ``config`` came from) is recorded with the config. ``placement``: this process's rank. ``init``: a
    finished AR checkpoint of the same architecture whose weights the run starts from instead of random ones.
    """
    config, loop = config or ARConfig(), loop or LoopConfig()
    encoder = build_text_encoder(text_encoder) if isinstance(text_encoder, str) else text_encoder
    config = dataclasses.replace(config, cond_dim=encoder.dim)
    torch.manual_seed(loop.seed)  # the initial weights are part of the run: a fresh run starts from the same ones
    network = TextConditionedAR(ARModel(config), encoder)
    recorded = {"preset": preset, **dataclasses.asdict(config)}
    if init is not None:
        checkpoint.start_from(init, network, KIND, recorded)
    unit = LossUnit(KIND, network, recorded, ar_batch_loss, optimizer or OptimizerConfig())
    return train_loop(unit, make_batches, loop, Path(checkpoint_dir), on_step=on_step, placement=placement,
                      metadata={**(metadata or {}), **text_encoder_metadata(encoder)})


def load_ar(directory: str | Path, device: torch.device | str | None = None) -> TextConditionedAR:
    """A trained generator from its checkpoint, in eval mode, with the text encoder it was trained with."""
    document = checkpoint.read_config(directory)
    if document.get("kind") != KIND:
        raise ValueError(f"{directory} holds a {document.get('kind')!r} checkpoint, not an AR generator")
    encoder_id = document["text_encoder"]
    if "text_encoder_config" in document:
        encoder: TextEncoder = LearnedTextEncoder(LearnedTextConfig(**document["text_encoder_config"]))
    else:
        encoder = FrozenMiniLMEncoder()
        if encoder.encoder_id != encoder_id:
            raise ValueError(f"{directory} was trained with text encoder {encoder_id}; "
                             f"the installed one is {encoder.encoder_id}")
    model = TextConditionedAR(ARModel(ARConfig.from_dict(document["config"])), encoder)
    device = device or checkpoint.pick_device()
    checkpoint.load_weights(directory, model, device)
    return model.to(device).eval()


def batches_from_examples(codes: torch.Tensor, texts: Sequence[str], batch_size: int,
                          seed: int = 0) -> Callable[[int], Iterator[ARBatch]]:
    """A ``make_batches`` over examples in memory (codes [N,K,T]): step s's batch is a pure function of (seed, s)."""
    if codes.shape[0] != len(texts) or not len(texts):
        raise ValueError(f"{codes.shape[0]} code sequences but {len(texts)} texts")
    texts = list(texts)

    def make_batches(start: int) -> Iterator[ARBatch]:
        step = start
        while True:
            picks = np.random.default_rng([seed, step]).integers(0, len(texts), size=batch_size)
            yield codes[torch.from_numpy(picks)], [texts[i] for i in picks]
            step += 1

    return make_batches


class ARFamily:
    """Codes of the shards' codec, one frame at a time (MusicGen's delay pattern), decoded by that codec."""

    name = KIND
    sampling_steps = False
    presets = PRESETS
    fine_tunes = False

    def default_steps(self, train: TrainSettings) -> int:
        return train.ar_steps

    def preset(self, model: ModelSettings) -> str:
        return model.ar

    def text_encoder_id(self, settings: GeneratorSettings) -> str:
        return encoder_id_for(settings.text_encoder)

    def baselines(self, data: TrainingData) -> dict[str, float]:
        """The cross-entropy of guessing codes uniformly: a model that learned anything is below it."""
        return {"uniform_baseline": math.log(data.codec.codebook_size)}

    def train(self, data: TrainingData, settings: GeneratorSettings, checkpoint_dir: Path,
              on_step: StepCallback | None, placement: Placement) -> TrainResult:
        longest = max(settings.frames(data), int(MAX_GENERATION_SECONDS * data.codec.frame_rate))
        config = dataclasses.replace(
            PRESETS[settings.preset](n_codebooks=data.codec.num_codebooks, codebook_size=data.codec.codebook_size),
            max_steps=longest + data.codec.num_codebooks + 1)

        def make_batches(start: int) -> Iterator[ARBatch]:
            for batch in settings.batches(data, placement, start):
                yield batch["codes"], batch["text"]

        return train_ar(make_batches, checkpoint_dir, config, settings.loop(), settings.optimizer(),
                        settings.text_encoder, {"codec_id": data.codec_id, "shards": data.shard_ids}, on_step,
                        placement, settings.preset, settings.init)

    def load(self, checkpoint_dir: Path, device: torch.device | str) -> TextConditionedAR:
        return load_ar(checkpoint_dir, device)

    def generate(self, network: TextConditionedAR, codec: Codec, prompt: str, frames: int, seed: int,
                 sampling: Sampling) -> Sampled:
        generator = torch.Generator(device=network.ar.device).manual_seed(seed)
        codes = network.generate([prompt], frames, cfg_scale=sampling.cfg_scale, generator=generator)
        return Sampled(codec.decode(codes.to(codec.device)), codes[0].cpu().numpy().astype(np.int16))
