"""Diffusion transformer (DiT) over codec latents, trained by flow matching.

The model reads the codec's continuous latents (``codec.dequantize(codes)``) as a 1-D sequence::

    latents [B,D,F] --normalize (per-channel mean/std buffers)--> unit-variance x [B,D,F]
      | patchify: p frames per token, [B, F/p, D*p] -> Linear -> tokens [B,N,d]
      | N x DiTBlock(tokens, c, text):
      |     self-attention (RoPE positions)   adaLN-Zero: shift/scale before, gate after, from c
      |     cross-attention to the text       pre-LayerNorm residual, padded text tokens masked out
      |     MLP (GELU)                        adaLN-Zero
      | final adaLN + Linear (zero-initialised) -> unpatchify
      v
    velocity [B,D,F] (in the normalised space)

    c = MLP(sinusoidal(t)) + Linear(masked mean of the text)   (the adaLN conditioning vector)

Text arrives as embeddings ``cond [B,L,Dc]`` with ``cond_mask [B,L]`` (True = real token) from the text
encoder; this module never sees strings. A learned null embedding stands for "no text": condition dropout
swaps it in while training so that one network also serves as the unconditional model for
classifier-free guidance (:func:`soundtrail.models.sampling.sample`).

Objective (rectified flow, the convention of stable-audio-tools' ``rectified_flow`` objective)::

    x_t = (1 - t) * x0 + t * noise,    t in [0, 1]: t = 0 is data, t = 1 is pure Gaussian noise
    target velocity  v = dx_t/dt = noise - x0          loss = mean (model(x_t, t) - v)^2

with ``t = sigmoid(N(mean, std))`` (logit-normal, as in SD3), which spends the training signal on the middle
of the path where the velocity is hardest to predict. Sampling integrates dx/dt = v from t = 1 to t = 0.

Imports only torch (and the shared null-text substitution of ``conditioning``). The anchors were
stable-audio-tools' ``models/dit.py`` and ``training/diffusion.py`` and the DiT paper (Peebles & Xie,
adaLN-Zero); this is a fresh, smaller implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soundtrail.models.conditioning import replace_condition
from soundtrail.models.rope import apply_rope, rope_tables


@dataclass
class DiTConfig:
    """Architecture and flow-matching objective. Defaults are CPU-sized (about 3.5 M parameters)."""

    latent_dim: int = 64  # D: the codec's latent channels (CodecConfig.latent_dim)
    cond_dim: int = 256  # Dc: the text encoder's embedding width
    patch_size: int = 1  # frames per token; F is zero-padded to a multiple and the output cropped back
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    rope_base: float = 10_000.0
    time_freq_dim: int = 256  # sinusoidal features of t before the timestep MLP
    # training objective
    t_logit_mean: float = 0.0  # logit-normal timestep sampling: t = sigmoid(mean + std * N(0, 1))
    t_logit_std: float = 1.0
    cond_dropout: float = 0.1  # probability of replacing a sample's text by the null embedding (CFG)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model must split into n_heads heads of even width (RoPE rotates pairs)")
        if self.patch_size < 1:
            raise ValueError("patch_size must be at least 1")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError("cond_dropout is a probability")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiTConfig:
        """Rebuild from ``dataclasses.asdict`` output read back from JSON; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def dit_base(latent_dim: int = 128, cond_dim: int = 768) -> DiTConfig:
    """A GPU-sized preset (about 160 M parameters): 12 layers of width 768, 12 heads, 2-frame patches."""
    return DiTConfig(latent_dim=latent_dim, cond_dim=cond_dim, patch_size=2, d_model=768, n_layers=12, n_heads=12)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """t [B] in [0, 1] -> [B, dim] sinusoidal features (of 1000 t, so the frequencies resolve small steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x [B,N,d] normalised elsewhere, shift/scale [B,d] from the conditioning vector."""
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class CrossAttention(nn.Module):
    """Latent tokens attend to the text tokens; ``mask`` [B,L] hides padding."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.q = nn.Linear(config.d_model, config.d_model)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head = width // self.n_heads
        q = self.q(x).view(batch, length, self.n_heads, head).transpose(1, 2)
        k, v = self.kv(context).view(batch, context.shape[1], 2, self.n_heads, head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        hidden = int(config.d_model * config.mlp_ratio)
        self.fc = nn.Linear(config.d_model, hidden)
        self.proj = nn.Linear(hidden, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class DiTBlock(nn.Module):
    """Self-attention and MLP under adaLN-Zero (gates start at zero: the block starts as the identity)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        width = config.d_model
        self.norm_attn = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(config)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross = CrossAttention(config)
        self.norm_mlp = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(config)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada(c).chunk(6, dim=-1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm_attn(x), shift_a, scale_a), cos, sin)
        x = x + self.cross(self.norm_cross(x), context, context_mask)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        width = config.d_model
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, config.latent_dim * config.patch_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


class DiT(nn.Module):
    """Velocity field v(x_t, t, text) on normalised latents; see the module docstring for the layout."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        width, patch = config.d_model, config.patch_size
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))
        self.patch_in = nn.Linear(config.latent_dim * patch, width)
        self.time_mlp = nn.Sequential(nn.Linear(config.time_freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond_in = nn.Sequential(nn.Linear(config.cond_dim, width), nn.LayerNorm(width, eps=1e-6))
        self.pooled_in = nn.Linear(config.cond_dim, width)
        self.null_cond = nn.Parameter(torch.randn(config.cond_dim) * 0.02)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.n_layers))
        self.final = FinalLayer(config)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for linear in self.time_mlp:
            if isinstance(linear, nn.Linear):
                nn.init.normal_(linear.weight, std=0.02)
        # adaLN-Zero: every modulation and the output projection start at zero.
        for ada in [block.ada for block in self.blocks] + [self.final.ada]:
            nn.init.zeros_(ada[-1].weight)
            nn.init.zeros_(ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- latent normalisation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def set_latent_stats(self, latents: torch.Tensor, eps: float = 1e-5) -> None:
        """Per-channel mean/std of data latents [N,D,F] (or [D,F]); stored as buffers, saved with the weights."""
        flat = latents.reshape(-1, *latents.shape[-2:]).transpose(0, 1).reshape(self.config.latent_dim, -1).double()
        self.latent_mean.copy_(flat.mean(dim=1).to(self.latent_mean))
        self.latent_std.copy_(flat.std(dim=1).clamp_min(eps).to(self.latent_std))

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Codec latents [B,D,F] -> the model's unit-variance space."""
        return (latents - self.latent_mean[:, None]) / self.latent_std[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's space -> codec latents, ready for ``codec.decode_latents``."""
        return x * self.latent_std[:, None] + self.latent_mean[:, None]

    # -- conditioning -----------------------------------------------------------------------------------------

    def drop_condition(self, cond: torch.Tensor, cond_mask: torch.Tensor,
                       drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows where ``drop`` [B] is True get the learned null text (condition dropout, the CFG branch)."""
        return replace_condition(cond, cond_mask, drop, self.null_cond)

    def _conditioning(self, t: torch.Tensor, cond: torch.Tensor,
                      cond_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(adaLN vector c [B,d], projected text [B,L,d], attention mask [B,L]) for one forward."""
        # A row without any valid token would make attention undefined: it attends to its first slot instead.
        cond_mask = cond_mask.clone()
        cond_mask[:, 0] |= ~cond_mask.any(dim=1)
        weights = cond_mask.to(cond.dtype)[..., None]
        pooled = (cond * weights).sum(dim=1) / weights.sum(dim=1)
        c = self.time_mlp(timestep_features(t, self.config.time_freq_dim).to(cond.dtype)) + self.pooled_in(pooled)
        return c, self.cond_in(cond), cond_mask

    # -- forward ----------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """x [B,D,F] normalised noisy latents, t [B] (or a scalar), cond [B,L,Dc], cond_mask [B,L] -> v [B,D,F]."""
        batch, dim, frames = x.shape
        if dim != self.config.latent_dim:
            raise ValueError(f"expected {self.config.latent_dim} latent channels, got {dim}")
        t = t.expand(batch) if t.dim() == 0 else t
        patch = self.config.patch_size
        pad = -frames % patch
        tokens = F.pad(x, (0, pad)).transpose(1, 2).reshape(batch, (frames + pad) // patch, patch * dim)
        h = self.patch_in(tokens)
        c, context, context_mask = self._conditioning(t, cond, cond_mask)
        cos, sin = rope_tables(h.shape[1], self.config.d_model // self.config.n_heads, self.config.rope_base,
                               h.device)
        for block in self.blocks:
            h = block(h, c, context, context_mask, cos, sin)
        out = self.final(h, c).reshape(batch, frames + pad, dim).transpose(1, 2)
        return out[..., :frames]


# ---------------------------------------------------------------------------------------------------------------
# Flow-matching objective
# ---------------------------------------------------------------------------------------------------------------


def sample_timesteps(batch: int, mean: float, std: float, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Logit-normal t [B] in (0, 1): sigmoid(mean + std * N(0, 1))."""
    return torch.sigmoid(mean + std * seeded_randn((batch,), generator, device))


def flow_matching_loss(model: DiT, latents: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Rectified-flow loss on codec latents [B,D,F] (raw; normalised here with the model's buffers).

    Draws t (logit-normal), noise and the condition-dropout coin from ``generator`` (the global RNG if None),
    so a fixed generator gives a fixed loss: useful to evaluate on a held-out batch.
    """
    config = model.config
    x0 = model.normalize(latents)
    batch, device = x0.shape[0], x0.device
    t = sample_timesteps(batch, config.t_logit_mean, config.t_logit_std, device, generator)
    noise = seeded_randn(x0.shape, generator, device).to(x0.dtype)
    drop = _draw(torch.rand, (batch,), generator, device) < config.cond_dropout
    if model.training and config.cond_dropout > 0:
        cond, cond_mask = model.drop_condition(cond, cond_mask, drop)
    tt = t.to(x0.dtype)[:, None, None]
    x_t = (1 - tt) * x0 + tt * noise
    return F.mse_loss(model(x_t, t, cond, cond_mask), noise - x0)


def seeded_randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None,
                 device: torch.device | str) -> torch.Tensor:
    """N(0, 1) float32 draws made where ``generator`` lives, then moved: a seed gives the same numbers anywhere."""
    return _draw(torch.randn, shape, generator, device)


def _draw(function: Callable[..., torch.Tensor], shape: tuple[int, ...] | torch.Size,
          generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return function(tuple(shape), generator=generator, device=source).to(device)
