"""One interface for every codec: what the tokenizer, the generators and the screen use.

::

    codec = load_codec(path)            # a soundtrail checkpoint dir, or a transformers EncodecModel dir
    codes = encode_segments(codec, segments [N, T] float32, batch_size)   -> int16 [N, K, F]
    codec.dequantize(codes) -> latents [B, D, F]      (what the diffusion model generates)
    codec.decode(codes) / codec.decode_latents(latents) -> wav [B, 1, F * hop]

Training soundtrail's own codec is :mod:`soundtrail.train.codec`; reconstruction metrics are
:mod:`soundtrail.codec.quality`. No workspace, ledger, Prefect or Ray here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.models.codec import CodecConfig, NeuralCodec

KIND = "codec"  # config.json "kind" of a soundtrail codec checkpoint


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
