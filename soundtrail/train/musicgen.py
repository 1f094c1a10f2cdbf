"""The musicgen family: fine-tune a pretrained transformers MusicGen on the shards' codes.

The base model is a local folder written by ``save_pretrained`` (``[base_models.musicgen] path``, admitted under
the licence policy by :mod:`soundtrail.train.start` before anything trains from it), loaded offline::

    MusicgenForConditionalGeneration   the decoder, its frozen T5 text encoder (its tokenizer must be saved in the
                                       same folder), the projection from T5's width to the decoder's, and the
                                       EnCodec whose codes the decoder reads
    MusicgenForCausalLM                the decoder alone: captions go through soundtrail's text encoder
                                       ([train] text_encoder) and a new projection trained with the decoder

What trains, :class:`MusicgenNetwork`, as transformers' MusicGen computes it::

    captions -> text encoder -> [B,L,Dt] -> projection -> [B,L,D] * mask      (a dropped caption: zeros, mask 0)
    codes [B,K,T] -> delay pattern (codebook k waits k steps; MusicGen's pad id fills the gaps and the start)
                  -> decoder -> K heads -> next-step cross-entropy per codebook over the steps that hold a code,
                     averaged over the codebooks (the loss transformers computes from delayed labels)

The shards must hold the codes the decoder learned to predict. Before any step: K codebooks of V codes, mono (a
stereo decoder interleaves 2K); and for a full MusicGen, its EnCodec's sample and frame rates and codebooks
(every quantizer embedding equal to the workspace codec's) must be the shards', or training is refused naming what
differs. Set ``[codec] checkpoint`` to the same EnCodec (for MusicGen, ``facebook/encodec_32khz``).

``lora_rank`` > 0 trains peft LoRA adapters on the decoder's linear layers (self- and cross-attention, feed-forward)
and the projection, leaving every pretrained decoder weight as it was. A learned text encoder trains with them.

Checkpoints go through the shared loop, in one process or on data-parallel ranks like every family. A frozen T5
is neither optimised nor in any state dict: it and its tokenizer are copied once into
``checkpoint_dir/text_encoder/`` by the rank that writes the model (the model folder stands alone; its weights'
digest is in config.json and checked on load), as a frozen MiniLM stays in its package.

Generation samples with the decoder's own KV cache and soundtrail's guidance and sampling (``apply_cfg``,
``sample_logits``, drawn from a seeded ``torch.Generator``), for both kinds of base alike: transformers'
``MusicgenForCausalLM.generate`` refuses classifier-free guidance with an encoder attention mask (it grows the
cross-attention mask with every step; seen with transformers 5.25).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from soundtrail import checkpoint
from soundtrail.codec.codecs import Codec, EncodecAdapter, load_codec
from soundtrail.config import ModelSettings, TrainSettings
from soundtrail.data.shards import CodecInfo
from soundtrail.models.ar import apply_cfg, codebook_cross_entropy, sample_logits
from soundtrail.models.conditioning import (
    FrozenMiniLMEncoder,
    FrozenTextEncoder,
    LearnedTextConfig,
    LearnedTextEncoder,
    build_text_encoder,
)
from soundtrail.models.patterns import make_pattern
from soundtrail.train.generator import BaseModel, GeneratorSettings, Sampled, Sampling, TrainingData
from soundtrail.train.loop import Placement, StepCallback, TrainResult, train_loop
from soundtrail.train.pretrained import architecture, read_model_config, weights_id
from soundtrail.train.unit import LossUnit

KIND = "musicgen"
FULL = "MusicgenForConditionalGeneration"
DECODER = "MusicgenForCausalLM"
TEXT_ENCODER_DIR = "text_encoder"  # in a checkpoint: the frozen T5 and its tokenizer, copied from the base
COND_DROPOUT = 0.1  # captions replaced by the null condition while training, which guidance needs
TOP_K = 250  # MusicGen's own sampling default
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
MusicgenBatch = tuple[torch.Tensor, list[str]]  # codes [B,K,T], captions


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers warns on every MusicGen config that its pad id lies past the vocabulary (by design: it is the
    pattern's special token) and draws progress bars; neither belongs in soundtrail's output."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class T5Text(FrozenTextEncoder):
    """A MusicGen's frozen T5 encoder and its tokenizer, with soundtrail's text-encoder interface."""

    def __init__(self, tokenizer: Any, model: nn.Module, encoder_id: str, max_tokens: int = 256):
        super().__init__(tokenizer, model, encoder_id, max_tokens)

    def save(self, directory: Path) -> str:
        """Write the encoder and tokenizer to ``directory`` (complete or absent after a kill); its weights' id."""
        if not directory.exists():
            partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            with quiet_transformers():
                self.model.save_pretrained(partial)
                self.tokenizer.save_pretrained(partial)
            os.replace(partial, directory)
        return weights_id(sorted(directory.glob("*.safetensors")))

    @classmethod
    def load(cls, directory: Path, encoder_id: str, digest: str) -> T5Text:
        from transformers import AutoTokenizer, T5EncoderModel

        found = weights_id(sorted(directory.glob("*.safetensors")))
        if found != digest:
            raise ValueError(f"{directory} changed since training (weights {found}, trained with {digest})")
        with quiet_transformers():
            model = T5EncoderModel.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        return cls(tokenizer, model, encoder_id)


TextEncoder = T5Text | FrozenMiniLMEncoder | LearnedTextEncoder


class MusicgenNetwork(nn.Module):
    """A MusicGen decoder and what feeds its cross-attention: captions -> text states -> projection."""

    def __init__(self, decoder: nn.Module, encoder: TextEncoder, project: nn.Module,
                 cond_dropout: float = COND_DROPOUT):
        super().__init__()
        self.decoder = decoder
        self.project = project
        self.cond_dropout = cond_dropout
        config = decoder.config
        self.num_codebooks, self.codebook_size = int(config.num_codebooks), int(config.vocab_size)
        self.special = int(config.pad_token_id)  # MusicGen's start token and pattern filler alike
        self.pattern = make_pattern("delay", self.num_codebooks)
        if encoder.trainable:
            self.text = encoder
        else:  # held in a list: outside parameters() and state_dict(); its weights live beside the checkpoint
            self._frozen = [encoder]

    @property
    def encoder(self) -> TextEncoder:
        return self.text if hasattr(self, "text") else self._frozen[0]

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def condition(self, texts: Sequence[str], drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> (states [B,L,D], mask [B,L] long), as MusicGen's forward prepares them; ``drop`` [B] rows
        become the null condition (zero states, nothing to attend to), as its generate makes them for guidance."""
        encoder, device = self.encoder, self.device
        if not encoder.trainable and next(encoder.parameters()).device != device:
            encoder.to(device)
        states, mask = encoder(list(texts))
        mask = mask.to(device)
        if drop is not None:
            mask = mask & ~drop[:, None]
        states = self.project(states.to(device)) * mask[..., None]
        return states, mask.long()

    def decode(self, steps: torch.Tensor, states: torch.Tensor, mask: torch.Tensor, cache: Any = None,
               use_cache: bool = False) -> Any:
        """The decoder on step tokens [B,K,S]: ``.logits`` [B*K,S,V], and ``.cache`` to pass to the next call."""
        batch, codebooks, length = steps.shape
        return self.decoder(input_ids=steps.reshape(batch * codebooks, length), encoder_hidden_states=states,
                            encoder_attention_mask=mask, cache=cache, use_cache=use_cache)

    def loss(self, codes: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Next-step cross-entropy on codes [B,K,T] for their captions (see the module docstring)."""
        codes = codes.to(self.device).long()
        batch, _, frames = codes.shape
        drop = None
        if self.training and self.cond_dropout > 0:
            drop = torch.rand(batch, device=self.device) < self.cond_dropout
        states, mask = self.condition(texts, drop)
        sequence = self.pattern.build(codes, self.special)
        valid = self.pattern.layout(frames, self.device).valid.expand(batch, -1, -1)
        logits = self.decode(sequence[:, :, :-1], states, mask).logits.view(
            batch, self.num_codebooks, -1, self.codebook_size)
        return codebook_cross_entropy(logits, sequence[:, :, 1:], valid[:, :, 1:])

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], frames: int, cfg_scale: float = 3.0, temperature: float = 1.0,
                 top_k: int = TOP_K, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample codes [B,K,frames]; conditional and null-caption rows in one batch when ``cfg_scale`` != 1."""
        device, batch = self.device, len(texts)
        states, mask = self.condition(texts)
        if cfg_scale != 1.0:
            states, mask = torch.cat([states, torch.zeros_like(states)]), torch.cat([mask, torch.zeros_like(mask)])
        rows = states.shape[0] // batch
        layout = self.pattern.layout(frames, device)
        sequence = torch.full((batch, self.num_codebooks, self.pattern.num_steps(frames)), self.special,
                              dtype=torch.long, device=device)
        cache = None
        for step in range(1, sequence.shape[-1]):
            output = self.decode(sequence[:, :, step - 1: step].repeat(rows, 1, 1), states, mask, cache, True)
            cache = output.cache
            logits = output.logits.view(rows * batch, self.num_codebooks, self.codebook_size)
            if rows == 2:
                logits = apply_cfg(logits, cfg_scale)
            drawn = sample_logits(logits.reshape(-1, self.codebook_size), temperature,
                                  min(top_k, self.codebook_size), 0.0, generator).view(batch, self.num_codebooks)
            sequence[:, :, step] = torch.where(layout.valid[:, step], drawn, self.special)
        return self.pattern.revert(sequence)


def musicgen_loss(network: MusicgenNetwork, batch: MusicgenBatch) -> torch.Tensor:
    return network.loss(*batch)


# ---------------------------------------------------------------------------------------------------------------
# The base model, and the shards' codes it must read
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Base:
    """A loaded base model: its decoder, and for a full MusicGen its text encoder, projection and EnCodec."""

    architecture: str
    decoder: nn.Module
    text: T5Text | None
    project: nn.Module | None
    audio: nn.Module | None


def load_base(base: BaseModel) -> Base:
    """The base model's modules, offline (``local_files_only``), in float32."""
    from transformers import AutoTokenizer, MusicgenForCausalLM, MusicgenForConditionalGeneration

    path = Path(base.path)
    kind = architecture(read_model_config(path), path)
    with quiet_transformers():
        if kind == DECODER:
            return Base(kind, MusicgenForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32),
                        None, None, None)
        if kind != FULL:
            raise ValueError(f"{path} holds a {kind}; the musicgen family fine-tunes {FULL} or {DECODER}")
        model = MusicgenForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} has no tokenizer for its text encoder: save MusicGen's processor (or its T5 "
                             "tokenizer) into the same folder") from exc
    project = getattr(model, "enc_to_dec_proj", None) or nn.Identity()
    return Base(kind, model.decoder, T5Text(tokenizer, model.text_encoder, t5_encoder_id(base)), project,
                model.audio_encoder)


def t5_encoder_id(base: BaseModel) -> str:
    """A full MusicGen's text encoder is part of its weights: named after them."""
    return f"musicgen-t5:{base.id}"


def check_codes(base: Base, info: CodecInfo, codec: Codec) -> None:
    """Refuse shards whose codes the base model's decoder did not learn to predict (see the module docstring)."""
    config = base.decoder.config
    problems = []
    if getattr(config, "audio_channels", 1) != 1:
        problems.append("its decoder is stereo (interleaved codebooks); the shards are mono")
    if config.num_codebooks != info.num_codebooks:
        problems.append(f"its decoder reads {config.num_codebooks} codebooks, the shards hold {info.num_codebooks}")
    if config.vocab_size != info.codebook_size:
        problems.append(f"its codebooks have {config.vocab_size} codes, the shards' {info.codebook_size}")
    if base.audio is not None and not problems:
        rate, frame_rate = int(base.audio.config.sampling_rate), float(base.audio.config.frame_rate)
        if rate != info.sample_rate or not math.isclose(frame_rate, info.frame_rate):
            problems.append(f"its EnCodec runs at {rate} Hz and {frame_rate:g} frames/s, the shards' codec at "
                            f"{info.sample_rate} Hz and {info.frame_rate:g} frames/s")
        elif not isinstance(codec, EncodecAdapter):
            problems.append("the shards were made by a soundtrail codec, not by its EnCodec")
        elif not _same_codebooks(base.audio, codec.model, info.num_codebooks):
            problems.append("its EnCodec's codebooks differ from the shards' codec's: the same code means another "
                            "sound")
    if problems:
        raise ValueError(f"the base model does not read the shards' codes ({info.codec_id}): {'; '.join(problems)}. "
                         "Tokenize with the EnCodec it was trained with ([codec] checkpoint)")


def _same_codebooks(ours: nn.Module, theirs: nn.Module, codebooks: int) -> bool:
    pairs = zip(ours.quantizer.layers[:codebooks], theirs.quantizer.layers[:codebooks], strict=True)
    return all(torch.equal(a.codebook.embed.cpu(), b.codebook.embed.cpu()) for a, b in pairs)


# ---------------------------------------------------------------------------------------------------------------
# Building, checkpoints, the family
# ---------------------------------------------------------------------------------------------------------------


def decoder_config(decoder: nn.Module) -> dict[str, Any]:
    """The decoder's architecture as config.json records it: what rebuilds it, without version or path notes."""
    skip = {"transformers_version", "architectures", "dtype", "torch_dtype"}
    return {key: value for key, value in decoder.config.to_dict().items()
            if not key.startswith("_") and key not in skip}


def add_adapters(decoder: nn.Module, rank: int) -> nn.Module:
    """LoRA adapters of ``rank`` on the decoder's linear layers; every other decoder weight is frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    return inject_adapter_in_model(config, decoder)


def model_config(network: MusicgenNetwork, lora_rank: int) -> dict[str, Any]:
    """config.json's ``config``: enough to rebuild the network before loading its weights."""
    encoder = network.encoder
    text: dict[str, Any] = {"kind": "minilm", "dim": encoder.dim}
    if isinstance(encoder, T5Text):
        text = {"kind": "t5", "dim": encoder.dim}
    elif isinstance(encoder, LearnedTextEncoder):
        text = {"kind": "learned", **asdict(encoder.config)}
    return {"decoder": decoder_config(network.decoder), "text": text,
            "projection": not isinstance(network.project, nn.Identity), "lora_rank": lora_rank,
            "cond_dropout": network.cond_dropout}


def build_network(base: BaseModel, text_encoder: str) -> tuple[MusicgenNetwork, Base]:
    """The network a fine-tuning run starts from: the base model's weights (a new projection for a bare decoder)."""
    loaded = load_base(base)
    encoder: TextEncoder = loaded.text if loaded.text is not None else build_text_encoder(text_encoder)
    hidden = int(loaded.decoder.config.hidden_size)
    project = loaded.project if loaded.project is not None else nn.Linear(encoder.dim, hidden)
    decoder = add_adapters(loaded.decoder, base.lora_rank) if base.lora_rank else loaded.decoder
    return MusicgenNetwork(decoder, encoder, project), loaded


def load_musicgen(directory: str | Path, device: torch.device | str | None = None) -> MusicgenNetwork:
    """A fine-tuned model from its checkpoint, in eval mode, with the text encoder it was trained with."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    directory = Path(directory)
    document = checkpoint.read_config(directory)
    if document.get("kind") != KIND:
        raise ValueError(f"{directory} holds a {document.get('kind')!r} checkpoint, not a musicgen model")
    config = document["config"]
    text = dict(config["text"])
    kind = text.pop("kind")
    if kind == "t5":
        encoder: TextEncoder = T5Text.load(directory / TEXT_ENCODER_DIR, document["text_encoder"],
                                           document["text_encoder_digest"])
    elif kind == "learned":
        encoder = LearnedTextEncoder(LearnedTextConfig(**{key: text[key] for key in asdict(LearnedTextConfig())}))
    else:
        encoder = FrozenMiniLMEncoder()
        if encoder.encoder_id != document["text_encoder"]:
            raise ValueError(f"{directory} was trained with text encoder {document['text_encoder']}; "
                             f"the installed one is {encoder.encoder_id}")
    with quiet_transformers():
        decoder = MusicgenForCausalLM(MusicgenDecoderConfig.from_dict(config["decoder"]))
    if config["lora_rank"]:
        decoder = add_adapters(decoder, config["lora_rank"])
    project = nn.Linear(encoder.dim, int(config["decoder"]["hidden_size"])) if config["projection"] else nn.Identity()
    network = MusicgenNetwork(decoder, encoder, project, config["cond_dropout"])
    device = device or checkpoint.pick_device()
    checkpoint.load_weights(directory, network, device)
    return network.to(device).eval()


class MusicgenFamily:
    """A pretrained MusicGen fine-tuned on the shards' codes of the EnCodec it reads, decoded by that codec."""

    name = KIND
    sampling_steps = False
    fine_tunes = True
    presets: dict[str, Any] = {}  # its size is its base model's

    def default_steps(self, train: TrainSettings) -> int:
        return train.musicgen_steps

    def preset(self, model: ModelSettings) -> None:
        return None

    def text_encoder_id(self, settings: GeneratorSettings) -> str:
        base = _required(settings)
        if architecture(read_model_config(base.path), base.path) == FULL:
            return t5_encoder_id(base)
        return build_text_encoder(settings.text_encoder).encoder_id

    def baselines(self, data: TrainingData) -> dict[str, float]:
        """The cross-entropy of guessing codes uniformly: a model that learned anything is below it."""
        return {"uniform_baseline": math.log(data.codec.codebook_size)}

    def train(self, data: TrainingData, settings: GeneratorSettings, checkpoint_dir: Path,
              on_step: StepCallback | None, placement: Placement) -> TrainResult:
        base = _required(settings)
        torch.manual_seed(settings.seed)  # a new projection or new adapters: the same ones for the same run
        network, loaded = build_network(base, settings.text_encoder)
        check_codes(loaded, data.codec, load_codec(data.codec_path, "cpu"))
        config = model_config(network, base.lora_rank)
        if settings.init is not None:
            checkpoint.start_from(settings.init, network, KIND, config)
        metadata: dict[str, Any] = {"codec_id": data.codec_id, "shards": data.shard_ids,
                                    "base_model": {"id": base.id, "path": base.path},
                                    "text_encoder": network.encoder.encoder_id}
        if isinstance(network.encoder, T5Text) and placement.rank == 0:  # the rank that writes the model
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            metadata["text_encoder_digest"] = network.encoder.save(checkpoint_dir / TEXT_ENCODER_DIR)

        def make_batches(start: int) -> Iterator[MusicgenBatch]:
            for batch in settings.batches(data, placement, start):
                yield batch["codes"], batch["text"]

        optimizer = dataclasses.replace(settings.optimizer(), lr=base.learning_rate, min_lr=base.learning_rate / 10)
        unit = LossUnit(KIND, network, config, musicgen_loss, optimizer)
        return train_loop(unit, make_batches, settings.loop(), checkpoint_dir, metadata=metadata, on_step=on_step,
                          placement=placement)

    def load(self, checkpoint_dir: Path, device: torch.device | str) -> MusicgenNetwork:
        return load_musicgen(checkpoint_dir, device)

    def generate(self, network: MusicgenNetwork, codec: Codec, prompt: str, frames: int, seed: int,
                 sampling: Sampling) -> Sampled:
        generator = torch.Generator(device=network.device).manual_seed(seed)
        codes = network.generate([prompt], frames, cfg_scale=sampling.cfg_scale, generator=generator)
        return Sampled(codec.decode(codes.to(codec.device)), codes[0].cpu().numpy().astype(np.int16))


def _required(settings: GeneratorSettings) -> BaseModel:
    if settings.base is None:
        raise ValueError("the musicgen family fine-tunes a pretrained model: name its folder in "
                         "[base_models.musicgen] path")
    return settings.base
