"""Residual vector quantizer: K codebooks, codebook k quantizing what codebooks before it left over.

Each codebook learns by exponential moving averages (no codebook gradients): it starts as the k-means
centroids of the first batch it sees, and a code that wins no vector for ``dead_code_steps`` training
steps is moved onto a random encoder output of the current batch. Quantizer dropout (the codec's
``n_q``) trains with a random number of active codebooks.

Under data parallelism (``torch.distributed`` initialised with more than one rank) the codebooks learn from every
rank's batch: k-means runs on the gathered batches, the EMA statistics are summed over the ranks, and rank 0's
choice of replacement vectors is everyone's, so the codebooks stay identical on every rank and learn what one
process would learn from the whole batch. Every rank must then quantize with the same ``n_q``.

Imports only torch, like every module in :mod:`soundtrail.models`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # the codec's config names the quantizer's sizes; the codec module imports this one
    from soundtrail.models.codec import CodecConfig


def nearest_code(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the closest codebook row for each row of ``x`` [N,D]: argmin ||e||^2 - 2 x.e, one matmul."""
    return torch.addmm((embed * embed).sum(1), x, embed.t(), alpha=-2.0).argmin(dim=1)


def kmeans(samples: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on [N,D] rows from k random samples; returns centroids [k,D] and cluster sizes [k]."""
    n = samples.shape[0]
    pick = torch.randperm(n, device=samples.device)[:k] if n >= k else torch.randint(0, n, (k,), device=samples.device)
    means = samples[pick].clone()
    counts = torch.zeros(k, device=samples.device)
    for _ in range(iters):
        assign = nearest_code(samples, means)
        counts = torch.bincount(assign, minlength=k).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        filled = counts > 0
        means[filled] = sums[filled] / counts[filled, None]
    return means, counts


def _ranks() -> int:
    """Data-parallel ranks whose codebooks must agree (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gathered(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``x`` (the same shape on each), rank 0's first."""
    if _ranks() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_ranks())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _summed(x: torch.Tensor) -> torch.Tensor:
    if _ranks() > 1:
        dist.all_reduce(x)
    return x


def _rank0s(x: torch.Tensor) -> torch.Tensor:
    if _ranks() > 1:
        dist.broadcast(x, src=0)
    return x


class Codebook(nn.Module):
    """One EMA-updated Euclidean codebook. All state lives in buffers, so checkpoints carry it."""

    def __init__(self, dim: int, size: int, decay: float, kmeans_iters: int, dead_code_steps: int, eps: float = 1e-5):
        super().__init__()
        self.size, self.decay, self.kmeans_iters = size, decay, kmeans_iters
        self.dead_code_steps, self.eps = dead_code_steps, eps
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.long))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """k-means on the first training batch this codebook sees (every rank's, under data parallelism)."""
        means, counts = kmeans(_gathered(x), self.size, self.kmeans_iters)
        means, counts = _rank0s(means.contiguous()), _rank0s(counts.clamp(min=1.0))
        self.embed.copy_(means)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(means * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step towards the batch's cluster means, then replace codes idle for ``dead_code_steps`` steps."""
        counts = _summed(torch.bincount(codes, minlength=self.size).to(x.dtype))
        sums = _summed(torch.zeros_like(self.embed).index_add_(0, codes, x))
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total  # Laplace smoothing
        self.embed.copy_(self.embed_sum / smoothed[:, None])

        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = self.idle_steps >= self.dead_code_steps
        n_dead = int(dead.sum())
        if n_dead:
            fresh = _rank0s(x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)].contiguous())
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
            self.idle_steps[dead] = 0


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # [B,D,F], straight-through: gradients reach the encoder unchanged
    codes: torch.Tensor  # [B,n_q,F]
    commit_loss: torch.Tensor  # mean over active codebooks of ||residual - sg(code)||^2


class ResidualVQ(nn.Module):
    """K codebooks; codebook k quantizes the residual left by codebooks 0..k-1."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.codebooks = nn.ModuleList(
            Codebook(config.latent_dim, config.codebook_size, config.ema_decay, config.kmeans_iters,
                     config.dead_code_steps)
            for _ in range(config.num_codebooks)
        )

    def encode(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        batch, dim, frames = latents.shape
        residual = latents.transpose(1, 2).reshape(-1, dim)
        codes = []
        for book in self.codebooks[:n_q]:
            idx = nearest_code(residual, book.embed)
            residual = residual - book.embed[idx]
            codes.append(idx)
        return torch.stack(codes, dim=1).view(batch, frames, n_q).transpose(1, 2)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        out = sum(F.embedding(codes[:, k], book.embed) for k, book in enumerate(self.codebooks[: codes.shape[1]]))
        return out.transpose(1, 2)

    def forward(self, latents: torch.Tensor, n_q: int) -> QuantizerOutput:
        """Training path: quantize, learn the codebooks (when training), and measure commitment."""
        batch, dim, frames = latents.shape
        x = latents.transpose(1, 2).reshape(-1, dim)
        residual, total = x, torch.zeros_like(x)
        codes, commit = [], []
        for book in self.codebooks[:n_q]:
            if self.training and not bool(book.initialized):
                book.initialize(residual.detach())
            idx = nearest_code(residual.detach(), book.embed)
            chosen = book.embed[idx].clone()  # clone: update() rewrites embed in place
            commit.append(F.mse_loss(residual, chosen))
            if self.training:
                book.update(residual.detach(), idx)
            residual = residual - chosen
            total = total + chosen
            codes.append(idx)
        quantized = x + (total - x).detach()
        return QuantizerOutput(
            quantized=quantized.view(batch, frames, dim).transpose(1, 2),
            codes=torch.stack(codes, dim=1).view(batch, frames, n_q).transpose(1, 2),
            commit_loss=torch.stack(commit).mean(),
        )
