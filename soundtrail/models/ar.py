"""Autoregressive (MusicGen-style) transformer over codec tokens, conditioned on text.

The codec gives K codebooks of codes per frame; a :class:`~soundtrail.models.patterns.CodebookPattern` lays them
out as steps [B, K, S] (delay pattern by default). One step is one position of a decoder-only transformer::

    steps [B,K,N] --sum of K code embeddings (table of V+1 rows each: V codes + the special token)--> [B,N,d]
      | n_layers x Block (pre-norm residual):
      |     causal self-attention (RoPE positions, fused qkv, KV cache while decoding)
      |     cross-attention to the text: cond [B,L,Dc] -> Linear+LayerNorm -> [B,L,d], padded tokens masked out
      |     MLP (GELU)
      | LayerNorm -> K output heads (one fused Linear d -> K*V)
      v
    logits [B,K,N,V]: position s predicts step s + 1

Text arrives as embeddings ``cond [B,L,Dc]`` with ``cond_mask [B,L]`` (True = real token) from
:mod:`soundtrail.models.conditioning`; this module never sees strings. A learned null embedding stands for "no
text": condition dropout swaps it in while training (:func:`ar_loss`), so the same network is also the
unconditional model that classifier-free guidance needs. :meth:`ARModel.generate` runs the conditional and the
unconditional rows as ONE batch of 2B and mixes their logits, l_u + s (l_c - l_u).

Decoding keeps a :class:`DecodeCache`: self-attention keys/values preallocated to the full length and written
in place (no concatenation, no re-computation), cross-attention keys/values projected once per generation.

Imports only torch (the RoPE helpers are shared with :mod:`soundtrail.models.diffusion`). The anchors were
nanoGPT's ``model.py`` (layout, init) and audiocraft's ``models/lm.py`` (pattern, CFG, sampling); this is a fresh,
smaller implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soundtrail.models.conditioning import replace_condition
from soundtrail.models.patterns import PATTERNS, CodebookPattern, make_pattern
from soundtrail.models.rope import apply_rope, rope_tables


@dataclass
class ARConfig:
    """Architecture and training-time condition dropout. Defaults are CPU-sized (about 4.8 M parameters)."""

    n_codebooks: int = 4  # K: the codec's codebooks (CodecConfig.num_codebooks)
    codebook_size: int = 256  # V: codes per codebook; id V is the special token of the pattern
    pattern: str = "delay"  # see soundtrail.models.patterns
    cond_dim: int = 256  # Dc: the text encoder's embedding width
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    max_steps: int = 1024  # longest step sequence the model reads: sizes the RoPE table and bounds generation
    dropout: float = 0.0
    bias: bool = False  # biases in the attention and MLP linears (MusicGen has none)
    rope_base: float = 10_000.0
    cond_dropout: float = 0.1  # probability of replacing a sample's text by the null embedding (CFG)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model must split into n_heads heads of even width (RoPE rotates pairs)")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; choose one of {', '.join(PATTERNS)}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError("cond_dropout is a probability")

    @property
    def special_token(self) -> int:
        """The id that fills pattern positions holding no code (and the start step)."""
        return self.codebook_size

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ARConfig:
        """Rebuild from ``dataclasses.asdict`` output read back from JSON; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def ar_small(cond_dim: int = 256, codebook_size: int = 256, n_codebooks: int = 4) -> ARConfig:
    """Between the CPU default and MusicGen-small (about 35 M parameters): 8 layers, width 512, 8 heads; sized for
    one GPU and a corpus of hours rather than weeks."""
    return ARConfig(n_codebooks=n_codebooks, codebook_size=codebook_size, cond_dim=cond_dim, d_model=512,
                    n_layers=8, n_heads=8)


def musicgen_small(cond_dim: int = 768, codebook_size: int = 2048, n_codebooks: int = 4) -> ARConfig:
    """MusicGen-small's size (420 M parameters): 24 layers, width 1024, 16 heads, 4 codebooks of 2048."""
    return ARConfig(n_codebooks=n_codebooks, codebook_size=codebook_size, cond_dim=cond_dim, d_model=1024,
                    n_layers=24, n_heads=16, max_steps=1536)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


class Linear(nn.Linear):
    """``nn.Linear`` that computes ``weight @ x^T`` when x has at most 3 rows on the CPU (decoding 1 or 2 rows).

    Same product, other orientation: MKL's sgemm streams a [out, in] weight 2-3x faster against a 2-row x^T than
    against x with 2 rows (the CFG batch), and no slower for 1 row; decoding at batch 1 is bound by exactly that.
    Training batches have thousands of rows and take the plain path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > 3 or x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        # x^T must be a column-major view of a row-major x (a row-major x^T takes MKL's slow path again)
        y = (self.weight @ x.reshape(rows, x.shape[-1]).contiguous().T).T.contiguous()
        y = y.view(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y



@dataclass
class DecodeCache:
    """Everything decoding reuses from one step to the next, for ``rows`` sequences.

    ``self_kv`` [n_layers, 2, rows, H, max_len, hd] is allocated once and written in place at ``length``;
    ``cross_kv`` holds each layer's projected text keys/values, computed once.
    """

    self_kv: torch.Tensor
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    cross_mask: torch.Tensor | None  # [rows,1,1,L], or None when no text token is padding
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.self_kv.shape[4]


class SelfAttention(nn.Module):
    """Causal multi-head attention; with a cache it appends this call's keys/values and attends to all so far."""

    def __init__(self, config: ARConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.out = Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # cache [2, B, H, capacity, hd]: write this chunk, attend to everything up to its end
            end = start + length
            cache[0, :, :, start:end] = k
            cache[1, :, :, start:end] = v
            mask = None
            if length > 1:  # a chunk: row i sees the past and chunk positions <= i
                mask = torch.arange(end, device=x.device)[None] <= torch.arange(start, end, device=x.device)[:, None]
            y = F.scaled_dot_product_attention(q, cache[0, :, :, :end], cache[1, :, :, :end], attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class CrossAttention(nn.Module):
    """Steps attend to the text; :meth:`project` makes the text keys/values once per sequence."""

    def __init__(self, config: ARConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.q = Linear(config.d_model, config.d_model, bias=config.bias)
        self.kv = Linear(config.d_model, 2 * config.d_model, bias=config.bias)
        self.out = Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout

    def project(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context [B,L,d] -> keys, values [B,H,L,hd]."""
        batch, length, width = context.shape
        k, v = self.kv(context).view(batch, length, 2, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q = self.q(x).view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, config: ARConfig):
        super().__init__()
        hidden = int(config.d_model * config.mlp_ratio)
        self.fc = Linear(config.d_model, hidden, bias=config.bias)
        self.proj = Linear(hidden, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm residual block: self-attention, cross-attention to the text, MLP."""

    def __init__(self, config: ARConfig):
        super().__init__()
        self.norm_self = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.norm_cross = nn.LayerNorm(config.d_model)
        self.cross = CrossAttention(config)
        self.norm_mlp = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cross_kv: tuple[torch.Tensor, torch.Tensor], cross_mask: torch.Tensor | None,
                cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_self(x), cos, sin, cache, start))
        x = x + self.dropout(self.cross(self.norm_cross(x), cross_kv, cross_mask))
        return x + self.mlp(self.norm_mlp(x))


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


class ARModel(nn.Module):
    """Next-step logits over pattern steps, given text embeddings; see the module docstring for the layout."""

    def __init__(self, config: ARConfig):
        super().__init__()
        self.config = config
        self.pattern: CodebookPattern = make_pattern(config.pattern, config.n_codebooks)
        vocab = config.codebook_size + 1  # the codes and the special token
        # K embedding tables stacked in one: codebook k's ids are offset by k * vocab, one lookup for all K.
        self.embed = nn.Embedding(config.n_codebooks * vocab, config.d_model)
        self.register_buffer("embed_offsets", torch.arange(config.n_codebooks) * vocab, persistent=False)
        self.cond_in = nn.Sequential(nn.Linear(config.cond_dim, config.d_model), nn.LayerNorm(config.d_model))
        self.null_cond = nn.Parameter(torch.randn(config.cond_dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_out = nn.LayerNorm(config.d_model)
        # The K output heads as one Linear d -> K*V: one matmul per step instead of K.
        self.heads = Linear(config.d_model, config.n_codebooks * config.codebook_size, bias=False)
        cos, sin = rope_tables(config.max_steps, config.d_model // config.n_heads, config.rope_base,
                               torch.device("cpu"))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """nanoGPT's: N(0, 0.02) everywhere, residual output projections scaled down by sqrt(2 * n_layers)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            for linear in (block.attn.out, block.cross.out, block.mlp.proj):
                nn.init.normal_(linear.weight, std=residual_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # -- conditioning -----------------------------------------------------------------------------------------

    def drop_condition(self, cond: torch.Tensor, cond_mask: torch.Tensor,
                       drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the text of rows where ``drop`` [B] is True by the null embedding (shapes unchanged)."""
        return replace_condition(cond, cond_mask, drop, self.null_cond)

    def _cross_inputs(self, cond: torch.Tensor,
                      cond_mask: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
        """Each layer's text keys/values and the attention mask (None when nothing is padding)."""
        if cond.dim() != 3 or cond.shape[-1] != self.config.cond_dim or cond_mask.shape != cond.shape[:2]:
            raise ValueError(f"cond must be [B,L,{self.config.cond_dim}] with cond_mask [B,L]; got "
                             f"{tuple(cond.shape)} and {tuple(cond_mask.shape)}")
        cond_mask = cond_mask.to(torch.bool)
        # A row without any valid token would make attention undefined: it attends to its first slot instead.
        cond_mask = torch.cat([cond_mask[:, :1] | ~cond_mask.any(dim=1, keepdim=True), cond_mask[:, 1:]], dim=1)
        context = self.cond_in(cond.to(self.embed.weight.dtype))
        kv = [block.cross.project(context) for block in self.blocks]
        mask = None if bool(cond_mask.all()) else cond_mask[:, None, None, :]
        return kv, mask

    # -- forward ----------------------------------------------------------------------------------------------

    def _run(self, steps: torch.Tensor, cross_kv: list[tuple[torch.Tensor, torch.Tensor]],
             cross_mask: torch.Tensor | None, cache: DecodeCache | None) -> torch.Tensor:
        """steps [B,K,N] -> logits [B,K,N,V]; with a cache the steps continue the cached ones."""
        batch, n_codebooks, length = steps.shape
        if n_codebooks != self.config.n_codebooks:
            raise ValueError(f"expected {self.config.n_codebooks} codebooks, got {n_codebooks}")
        start = cache.length if cache is not None else 0
        if start + length > self.config.max_steps:
            raise ValueError(f"{start + length} steps exceed max_steps={self.config.max_steps}")
        x = self.embed(steps.transpose(1, 2) + self.embed_offsets).sum(dim=2)
        cos, sin = self.rope_cos[start:start + length], self.rope_sin[start:start + length]
        for index, block in enumerate(self.blocks):
            layer_cache = cache.self_kv[index] if cache is not None else None
            x = block(x, cos, sin, cross_kv[index], cross_mask, layer_cache, start)
        if cache is not None:
            cache.length += length
        logits = self.heads(self.norm_out(x))
        return logits.view(batch, length, n_codebooks, self.config.codebook_size).transpose(1, 2)

    def forward(self, steps: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B,K,N,V] for pattern steps [B,K,N]; position s predicts step s + 1."""
        cross_kv, cross_mask = self._cross_inputs(cond, cond_mask)
        return self._run(steps, cross_kv, cross_mask, None)

    # -- incremental decoding ---------------------------------------------------------------------------------

    def start_decoding(self, cond: torch.Tensor, cond_mask: torch.Tensor, max_length: int) -> DecodeCache:
        """A cache for up to ``max_length`` steps of the rows of ``cond``; text keys/values are projected now."""
        if max_length > self.config.max_steps:
            raise ValueError(f"{max_length} steps exceed max_steps={self.config.max_steps}")
        cross_kv, cross_mask = self._cross_inputs(cond, cond_mask)
        config = self.config
        head = config.d_model // config.n_heads
        self_kv = torch.empty(config.n_layers, 2, cond.shape[0], config.n_heads, max_length, head,
                              device=self.device, dtype=self.embed.weight.dtype)
        return DecodeCache(self_kv, cross_kv, cross_mask)

    def decode(self, steps: torch.Tensor, cache: DecodeCache) -> torch.Tensor:
        """Logits [B,K,N,V] for steps [B,K,N] that follow the ``cache.length`` steps already decoded."""
        if cache.length + steps.shape[-1] > cache.capacity:
            raise ValueError(f"the cache holds {cache.capacity} steps; {cache.length + steps.shape[-1]} asked")
        return self._run(steps, cache.cross_kv, cache.cross_mask, cache)

    @torch.inference_mode()
    def generate(self, cond: torch.Tensor, cond_mask: torch.Tensor, frames: int, cfg_scale: float = 3.0,
                 temperature: float = 1.0, top_k: int = 250, top_p: float = 0.0,
                 prompt_codes: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample codes [B,K,frames] for text embeddings ``cond`` [B,L,Dc] / ``cond_mask`` [B,L].

        ``prompt_codes`` [B,K,P] (P <= frames) are kept as the first P frames and the rest continues them.
        ``cfg_scale`` 1 runs the conditional rows alone; otherwise conditional and null-text rows run as one
        batch of 2B. ``temperature`` 0 is greedy; ``top_k`` 0 and ``top_p`` 0 switch those filters off. The
        draws come from ``generator`` (the global RNG if None): the same seed gives the same codes. Put the
        model in eval mode first.
        """
        config, pattern, device = self.config, self.pattern, self.device
        batch, special = cond.shape[0], config.special_token
        total = pattern.num_steps(frames)
        layout = pattern.layout(frames, device)
        sequence = torch.full((batch, config.n_codebooks, total), special, dtype=torch.long, device=device)
        known = torch.zeros_like(layout.valid)  # [K,S]: steps fixed by the prompt
        first = 1  # the first step to sample; step 0 is the start token
        if prompt_codes is not None:
            prompt_frames = prompt_codes.shape[-1]
            if prompt_codes.shape[:2] != (batch, config.n_codebooks) or prompt_frames > frames:
                raise ValueError(f"prompt_codes must be [{batch},{config.n_codebooks},P<={frames}], "
                                 f"got {tuple(prompt_codes.shape)}")
            padded = torch.zeros(batch, config.n_codebooks, frames, dtype=torch.long, device=device)
            padded[..., :prompt_frames] = prompt_codes.to(device)
            known = layout.valid & (layout.frame < prompt_frames)
            sequence = torch.where(known, pattern.build(padded, special), sequence)
            first = prompt_frames + 1  # steps 0..P hold nothing but prompt codes and special tokens

        guided = cfg_scale != 1.0
        cond, cond_mask = cond.to(device), cond_mask.to(device)
        if guided:
            null, null_mask = self.drop_condition(cond, cond_mask, torch.ones(batch, dtype=torch.bool, device=device))
            cond, cond_mask = torch.cat([cond, null]), torch.cat([cond_mask, null_mask])
        cache = self.start_decoding(cond, cond_mask, total - 1)
        rows = cond.shape[0]
        if first > 1:  # prefill the prompt in one pass; its logits are not needed
            self.decode(sequence[:, :, : first - 1].repeat(rows // batch, 1, 1), cache)
        for step in range(first, total):
            logits = self.decode(sequence[:, :, step - 1: step].repeat(rows // batch, 1, 1), cache)[:, :, 0]
            if guided:
                logits = apply_cfg(logits, cfg_scale)
            drawn = sample_logits(logits.reshape(-1, config.codebook_size), temperature, top_k, top_p, generator)
            drawn = drawn.view(batch, config.n_codebooks)
            drawn = torch.where(layout.valid[:, step], drawn, special)
            sequence[:, :, step] = torch.where(known[:, step], sequence[:, :, step], drawn)
        return pattern.revert(sequence)


# ---------------------------------------------------------------------------------------------------------------
# Guidance and sampling
# ---------------------------------------------------------------------------------------------------------------


def apply_cfg(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits of 2B rows (conditional first, then unconditional): l_u + s (l_c - l_u)."""
    conditional, unconditional = logits.float().chunk(2)
    return unconditional + scale * (conditional - unconditional)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set to -inf every logit [N,V] outside the ``top_k`` largest and outside the top-``top_p`` nucleus.

    The nucleus is the smallest set of most probable tokens whose probabilities sum to at least ``top_p``
    (the most probable token always stays). ``top_k`` 0 and ``top_p`` 0 (or >= 1) switch a filter off.
    """
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` [N,V]; temperature 0 is argmax. Draws happen on ``generator``'s device.

    With top-k the draw is made among the k best only (softmax and multinomial over k, not V): the same
    distribution as masking the rest to -inf, at k/V of the cost per step.
    """
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        values, indices = torch.topk(logits, top_k, dim=-1)
        return indices.gather(-1, _draw(filter_logits(values, 0, top_p), generator)[:, None])[:, 0]
    return _draw(filter_logits(logits, 0, top_p), generator)


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Index [N] drawn from softmax(logits) [N,V] with ``generator`` (on its device), returned on the logits'."""
    probs = logits.softmax(dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)


# ---------------------------------------------------------------------------------------------------------------
# Training objective
# ---------------------------------------------------------------------------------------------------------------


def ar_loss(model: ARModel, codes: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor,
            lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Next-step cross-entropy on codes [B,K,T]: mean over codebooks of each codebook's mean over its valid steps.

    Pattern positions that hold the special token are not targets. ``lengths`` [B] marks frames at and after a
    row's length as padding: they become special tokens, as after the end of a shorter sequence, so a padded row
    scores exactly as it would alone. While the model trains, each row's text is replaced by the null embedding
    with probability ``cond_dropout`` (drawn from the global RNG, which the training loop reseeds every step), which
    teaches the unconditional model that guidance needs.
    """
    config, pattern = model.config, model.pattern
    if model.training and config.cond_dropout > 0:
        drop = torch.rand(codes.shape[0], device=cond.device) < config.cond_dropout
        cond, cond_mask = model.drop_condition(cond, cond_mask, drop)
    sequence = pattern.build(codes.long(), config.special_token)
    layout = pattern.layout(codes.shape[-1], codes.device)
    valid = layout.valid.expand(codes.shape[0], -1, -1)  # [B,K,S]
    if lengths is not None:
        valid = valid & (layout.frame[None] < lengths.to(codes.device)[:, None, None])
        sequence = sequence.masked_fill(~valid, config.special_token)
    logits = model(sequence[:, :, :-1], cond, cond_mask)  # [B,K,S-1,V]
    return codebook_cross_entropy(logits, sequence[:, :, 1:], valid[:, :, 1:])


def codebook_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over codebooks of each codebook's mean cross-entropy over its valid steps.

    ``logits`` [B,K,S,V] predict ``targets`` [B,K,S]; ``valid`` [B,K,S] marks the steps that hold a code (the
    pattern's special tokens are no targets). Every codebook weighs the same, however many steps it has. The
    logits go to the loss as contiguous rows of V classes: moving the classes to dimension 1 instead makes a
    strided view that the loss and its backward read far more slowly.
    """
    targets = targets.masked_fill(~valid, -100)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                             reduction="none").view(targets.shape)
    per_codebook = losses.sum(dim=(0, 2)) / valid.sum(dim=(0, 2)).clamp_min(1)
    return per_codebook.mean()
