"""The diffusion family: text encoder + DiT as one model, trained by the shared loop, reloaded to sample latents.

::

    batch (latents [B,D,F], texts)         latents: codec.dequantize(codes) of shard segments
      | text encoder(texts) -> cond [B,L,Dc], mask [B,L]
      | flow_matching_loss(DiT, latents, cond, mask)
      v
    LossUnit (AdamW, warm-up + cosine) in train_loop (checkpoints, exact resume) -> checkpoint_dir

A learned text encoder is a submodule of :class:`TextToLatent`, trained with the DiT and saved in the same
``model.safetensors``. A frozen pretrained one (MiniLM) is held beside the modules: it is neither optimised nor
copied into every checkpoint, and ``config.json`` names it by ``encoder_id`` (which carries its weights' digest),
so :func:`load_model` refuses a checkpoint whose encoder is not the one installed.

The DiT's latent normalisation is set from the first batches before step 0 (a pure function of the step, so a
resumed run computes the same statistics; the saved buffers are loaded over them anyway); under data
parallelism every rank computes them from the same batches (the whole stream's, not its own).
:class:`DiffusionFamily` is the family contract (:mod:`soundtrail.train.generator`): it trains on the shards' codes
dequantized by their codec, and decodes what it samples through that codec's decoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soundtrail.checkpoint import load_weights, read_config, start_from
from soundtrail.codec.codecs import Codec, load_codec
from soundtrail.config import ModelSettings, TrainSettings
from soundtrail.models.conditioning import (
    FrozenMiniLMEncoder,
    LearnedTextConfig,
    LearnedTextEncoder,
    TextEncoder,
    build_text_encoder,
    encoder_id_for,
)
from soundtrail.models.diffusion import DiT, DiTConfig, dit_base, flow_matching_loss
from soundtrail.models.sampling import Method, sample
from soundtrail.train.generator import GeneratorSettings, Sampled, Sampling, TrainingData
from soundtrail.train.loop import LoopConfig, MakeBatches, Placement, StepCallback, TrainResult, train_loop
from soundtrail.train.unit import LossUnit, OptimizerConfig

KIND = "diffusion"
PRESETS: dict[str, Callable[..., DiTConfig]] = {  # (latent_dim=, cond_dim=) -> the architecture
    "tiny": DiTConfig,  # the CPU-sized default
    "base": dit_base,
}
Batch = tuple[torch.Tensor, Sequence[str]]


class TextToLatent(nn.Module):
    """Captions -> codec latents: a text encoder feeding a :class:`DiT`."""

    def __init__(self, dit: DiT, text_encoder: TextEncoder):
        super().__init__()
        if dit.config.cond_dim != text_encoder.dim:
            raise ValueError(f"DiT cond_dim {dit.config.cond_dim} != text encoder width {text_encoder.dim}")
        self.dit = dit
        if text_encoder.trainable:
            self.text_encoder = text_encoder
        self._encoder = (text_encoder,)  # a tuple is not registered: a frozen encoder stays out of the state dict

    @property
    def encoder(self) -> TextEncoder:
        return self._encoder[0]

    @property
    def device(self) -> torch.device:
        return self.dit.latent_mean.device

    def encode_text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond [B,L,Dc], cond_mask [B,L]) on the DiT's device."""
        if not self.encoder.trainable:
            self.encoder.to(self.device)
        cond, mask = self.encoder(list(texts))
        return cond.to(self.device), mask.to(self.device)

    def loss(self, latents: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Flow-matching loss of one batch; noise and timesteps come from torch's global RNG."""
        cond, mask = self.encode_text(texts)
        return flow_matching_loss(self.dit, latents.to(self.device), cond, mask)

    @torch.no_grad()
    def generate(self, texts: Sequence[str], frames: int, steps: int = 16, method: Method = "heun",
                 cfg_scale: float = 3.0, seed: int = 0, shift: float = 1.0) -> torch.Tensor:
        """Codec latents [len(texts), D, frames] for the captions; ``seed`` fixes the result."""
        cond, mask = self.encode_text(texts)
        shape = (len(texts), self.dit.config.latent_dim, frames)
        return sample(self.dit, shape, cond, mask, steps=steps, method=method, cfg_scale=cfg_scale,
                      generator=torch.Generator().manual_seed(seed), shift=shift)


def model_config(model: TextToLatent, preset: str | None = None) -> dict[str, Any]:
    """The ``config`` document of a checkpoint: enough to rebuild the model before loading its weights, and the
    name of the preset its DiT came from."""
    encoder = model.encoder
    text: dict[str, Any] = {"kind": "minilm"}
    if isinstance(encoder, LearnedTextEncoder):
        text = {"kind": "learned", **dataclasses.asdict(encoder.config)}
    return {"preset": preset, "dit": dataclasses.asdict(model.dit.config), "text": text,
            "text_encoder": encoder.encoder_id}


def build_model(config: dict[str, Any]) -> TextToLatent:
    """An untrained :class:`TextToLatent` from a :func:`model_config` document."""
    text = dict(config["text"])
    if text.pop("kind") == "minilm":
        encoder: TextEncoder = FrozenMiniLMEncoder()
    else:
        encoder = LearnedTextEncoder(LearnedTextConfig(**text))
    if encoder.encoder_id != config["text_encoder"]:
        raise ValueError(f"the model was trained with text encoder {config['text_encoder']}, "
                         f"but {encoder.encoder_id} is what is installed")
    return TextToLatent(DiT(DiTConfig.from_dict(config["dit"])), encoder)


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> TextToLatent:
    """A finished diffusion checkpoint, in eval mode on ``device``."""
    document = read_config(directory)
    if document.get("kind") != KIND:
        raise ValueError(f"{directory} holds a {document.get('kind')!r} model, not a {KIND} model")
    model = build_model(document["config"]).to(device)
    load_weights(directory, model, device)
    return model.eval()


def diffusion_loss(model: TextToLatent, batch: Batch) -> torch.Tensor:
    latents, texts = batch
    return model.loss(latents, texts)


def train_diffusion(model: TextToLatent, make_batches: Callable[[int], Iterator[Batch]], loop: LoopConfig,
                    optimizer: OptimizerConfig, checkpoint_dir: str | Path, stats_batches: int = 8,
                    metadata: dict[str, Any] | None = None, on_step: StepCallback | None = None,
                    placement: Placement | None = None, stats_source: MakeBatches | None = None,
                    preset: str | None = None, init: str | Path | None = None) -> TrainResult:
    """Set the latent statistics from the first ``stats_batches`` batches, then run the shared training loop.

    ``make_batches(start_step)`` yields ``(latents [B,D,F], texts)`` from that step on; the statistics come from
    ``stats_source`` (the same kind of function; default ``make_batches``), which must be the same on every
    rank. The checkpoint's config.json holds :func:`model_config` under ``config`` and ``metadata`` beside it
    (e.g. the shards read). ``init``: a finished checkpoint of the same architecture to start from; its weights
    and its latent statistics (what its weights were trained to read) replace the fresh ones.
    """
    first = [latents for latents, _ in islice((stats_source or make_batches)(0), stats_batches)]
    if not first:
        raise ValueError("make_batches(0) yielded no batches")
    model.dit.set_latent_stats(torch.cat([latents.float().cpu() for latents in first]))
    if init is not None:
        start_from(init, model, KIND, model_config(model, preset))
    unit = LossUnit(KIND, model, model_config(model, preset), diffusion_loss, optimizer)
    return train_loop(unit, make_batches, loop, Path(checkpoint_dir), metadata=metadata, on_step=on_step,
                      placement=placement)


class DiffusionFamily:
    """Continuous codec latents (the dequantized codes) by flow matching, decoded by the shards' codec."""

    name = KIND
    sampling_steps = True
    presets = PRESETS
    fine_tunes = False

    def default_steps(self, train: TrainSettings) -> int:
        return train.diffusion_steps

    def preset(self, model: ModelSettings) -> str:
        return model.diffusion

    def text_encoder_id(self, settings: GeneratorSettings) -> str:
        return encoder_id_for(settings.text_encoder)

    def baselines(self, data: TrainingData) -> dict[str, float]:
        return {}

    def train(self, data: TrainingData, settings: GeneratorSettings, checkpoint_dir: Path,
              on_step: StepCallback | None, placement: Placement) -> TrainResult:
        codec = load_codec(data.codec_path, placement.device)
        encoder = build_text_encoder(settings.text_encoder)
        torch.manual_seed(settings.seed)
        latent_dim = int(codec.dequantize(torch.zeros(1, data.codec.num_codebooks, 1, dtype=torch.long)).shape[1])
        config = PRESETS[settings.preset](latent_dim=latent_dim, cond_dim=encoder.dim)
        model = TextToLatent(DiT(config), encoder)

        def latent_batches(batches: Iterator[dict[str, Any]]) -> Iterator[Batch]:
            for batch in batches:
                with torch.no_grad():
                    latents = codec.dequantize(batch["codes"].to(codec.device)).float().cpu()
                yield latents, batch["text"]

        def make_batches(start: int) -> Iterator[Batch]:
            return latent_batches(settings.batches(data, placement, start))

        def whole_stream(start: int) -> Iterator[Batch]:  # the same on every rank: the latent statistics
            return latent_batches(settings.stream(data).batches(start))

        return train_diffusion(model, make_batches, settings.loop(), settings.optimizer(), checkpoint_dir,
                               metadata={"codec_id": data.codec_id, "shards": data.shard_ids}, on_step=on_step,
                               placement=placement, stats_source=whole_stream, preset=settings.preset,
                               init=settings.init)

    def load(self, checkpoint_dir: Path, device: torch.device | str) -> TextToLatent:
        return load_model(checkpoint_dir, device)

    def generate(self, network: TextToLatent, codec: Codec, prompt: str, frames: int, seed: int,
                 sampling: Sampling) -> Sampled:
        latents = network.generate([prompt], frames, steps=sampling.steps, cfg_scale=sampling.cfg_scale, seed=seed)
        return Sampled(codec.decode_latents(latents.to(codec.device)), None)
