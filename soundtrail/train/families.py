"""The two generator families as pipeline stages: train from current shards, generate audio.

Both families read the same shard stream (:class:`~soundtrail.data.dataset.ShardStream`): the AR
model learns the codes themselves; the diffusion model learns the codec's continuous latents,
which are the dequantized codes (so shards stay codes-only). Each trained model is recorded
with exactly the shards (sha256) and codec it saw (:func:`~soundtrail.train.stage.record_model`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from soundtrail.checkpoint import pick_device
from soundtrail.codec.codecs import Codec, load_codec
from soundtrail.data.dataset import ShardStream
from soundtrail.models.ar import ARConfig
from soundtrail.models.conditioning import build_text_encoder
from soundtrail.models.diffusion import DiT, DiTConfig
from soundtrail.train.ar import load_ar, train_ar
from soundtrail.train.diffusion import TextToLatent, load_model, train_diffusion
from soundtrail.train.loop import TrainLoopConfig, TrainResult
from soundtrail.train.stage import TrainingData, record_model, run_dir, training_data
from soundtrail.workspace import Workspace

Family = Literal["ar", "diffusion"]
FAMILIES: tuple[Family, ...] = ("ar", "diffusion")
MAX_GENERATION_SECONDS = 30.0  # the AR model's position table covers this much audio


@dataclass(frozen=True)
class GeneratorSettings:
    """How one training run reads the shards and optimises (from ``[train]`` in soundtrail.toml)."""

    steps: int
    batch_size: int
    learning_rate: float
    crop_seconds: float
    text_encoder: str
    seed: int


def generator_settings(workspace: Workspace, kind: Family, steps: int | None) -> GeneratorSettings:
    train = workspace.settings.train
    default_steps = train.ar_steps if kind == "ar" else train.diffusion_steps
    return GeneratorSettings(steps or default_steps, train.batch_size, train.learning_rate, train.crop_seconds,
                             train.text_encoder, train.seed)


def _loop_config(settings: GeneratorSettings) -> TrainLoopConfig:
    return TrainLoopConfig(steps=settings.steps, lr=settings.learning_rate, min_lr=settings.learning_rate / 10,
                           warmup_steps=min(50, settings.steps // 10), checkpoint_every=max(25, settings.steps // 4),
                           seed=settings.seed, log_every=max(10, settings.steps // 10))


def _stream(data: TrainingData, settings: GeneratorSettings) -> ShardStream:
    frames = max(8, int(settings.crop_seconds * data.codec.frame_rate))
    return ShardStream(data.files, frames, seed=settings.seed)


def _train_ar(data: TrainingData, settings: GeneratorSettings, directory: Path,
              on_step: Callable[[int, float], None] | None) -> TrainResult:
    stream = _stream(data, settings)
    longest = max(stream.frames, int(MAX_GENERATION_SECONDS * data.codec.frame_rate))
    config = ARConfig(n_codebooks=data.codec.num_codebooks, codebook_size=data.codec.codebook_size,
                      max_steps=longest + data.codec.num_codebooks + 1)

    def make_batches(start: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
        for batch in stream.batches(settings.batch_size, start):
            yield batch["codes"], batch["text"]

    return train_ar(make_batches, directory, config, _loop_config(settings), settings.text_encoder,
                    {"codec_id": data.codec_id, "shards": data.shard_ids}, on_step)


def _train_diffusion(data: TrainingData, settings: GeneratorSettings, directory: Path,
                     on_step: Callable[[int, float], None] | None) -> TrainResult:
    stream = _stream(data, settings)
    codec = load_codec(data.codec_path)
    encoder = build_text_encoder(settings.text_encoder)
    torch.manual_seed(settings.seed)
    latent_dim = int(codec.dequantize(torch.zeros(1, data.codec.num_codebooks, 1, dtype=torch.long)).shape[1])
    model = TextToLatent(DiT(DiTConfig(latent_dim=latent_dim, cond_dim=encoder.dim)), encoder)

    def make_batches(start: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
        for batch in stream.batches(settings.batch_size, start):
            with torch.no_grad():
                latents = codec.dequantize(batch["codes"].to(codec.device)).float().cpu()
            yield latents, batch["text"]

    return train_diffusion(model, make_batches, _loop_config(settings), directory,
                           metadata={"codec_id": data.codec_id, "shards": data.shard_ids}, on_step=on_step)


def train_generator(workspace: Workspace, kind: Family, steps: int | None = None,
                    on_step: Callable[[int, float], None] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Train (or resume, or find finished) a generator of ``kind`` on the current shards; record it."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown generator {kind!r}; choose one of {', '.join(FAMILIES)}")
    settings = generator_settings(workspace, kind, steps)
    data = training_data(workspace)
    directory = run_dir(workspace, kind, data, dataclasses.asdict(settings))
    trainer = _train_ar if kind == "ar" else _train_diffusion
    result = trainer(data, settings, directory, on_step)
    text_encoder = build_text_encoder(settings.text_encoder).encoder_id
    metrics = {"initial_loss": result.initial_loss, "final_loss": result.final_loss, "steps": result.total_steps,
               "device": result.device}
    if kind == "ar":
        metrics["uniform_baseline"] = math.log(data.codec.codebook_size)
    model_id = record_model(workspace, kind, directory, data, text_encoder, result.total_steps, metrics, run_id)
    return {"model_id": model_id, "kind": kind, "path": str(directory), "codec_id": data.codec_id,
            "shards": len(data.shard_ids), "metrics": metrics}


@dataclass
class Generated:
    """Audio from a generator, before the release gate."""

    audio: np.ndarray  # mono float32
    sample_rate: int
    codes: np.ndarray | None  # [K, F] when the model produced tokens of the shards' codec
    seconds_taken: float


def load_generator(model_row: dict[str, Any], device: torch.device | str | None = None) -> Any:
    """The trained generator of a ledger ``models`` row, in eval mode."""
    if model_row["kind"] == "ar":
        return load_ar(model_row["path"], device)
    return load_model(model_row["path"], device or pick_device())


def generate(model_row: dict[str, Any], codec_row: dict[str, Any], prompt: str, seconds: float, seed: int,
             *, cfg_scale: float = 3.0, diffusion_steps: int = 16, model: Any = None,
             codec: Codec | None = None) -> Generated:
    """Generate ``seconds`` of audio for ``prompt``; the same seed gives the same audio."""
    codec = codec or load_codec(Path(codec_row["path"]))
    model = model or load_generator(model_row)
    frames = max(1, math.ceil(seconds * codec.frame_rate))
    start = time.perf_counter()
    with torch.inference_mode():
        if model_row["kind"] == "ar":
            generator = torch.Generator(device=model.ar.device).manual_seed(seed)
            codes = model.generate([prompt], frames, cfg_scale=cfg_scale, generator=generator)
            wav = codec.decode(codes.to(codec.device))
            token_codes = codes[0].cpu().numpy().astype(np.int16)
        else:
            latents = model.generate([prompt], frames, steps=diffusion_steps, cfg_scale=cfg_scale, seed=seed)
            wav = codec.decode_latents(latents.to(codec.device))
            token_codes = None
    audio = wav.reshape(-1).float().cpu().numpy()[: int(round(seconds * codec.sample_rate))]
    return Generated(audio.astype(np.float32), codec.sample_rate, token_codes, time.perf_counter() - start)
