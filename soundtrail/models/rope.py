"""Rotary position embeddings (RoPE), shared by the autoregressive and the diffusion transformer.

Attention scores then depend on the distance between two positions only, which lets both models run on
sequences longer or shorter than the ones they were trained on without a learned position table.
"""

from __future__ import annotations

import torch


def rope_tables(length: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim/2] for rotary position embeddings."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B,H,N,hd] by position: pairs (first half, second half) of each head turn by angle pos * freq."""
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return rotated.to(x.dtype)
