"""The trainable unit of a model with one loss: AdamW, warm-up + cosine, clipping, accumulation, EMA, bf16 on CUDA.

Both generator families train as a :class:`LossUnit` (the codec, with its discriminator, is its own unit). The
learning rate is a pure function of the step, set before every optimizer step::

    lr(step) = lr * (step + 1) / (warmup + 1)                                   for step < warmup
             = min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2          after, progress 0 -> 1 at the end

so a resumed run needs no scheduler state, and a run extended past its end stretches the cosine to the new end.

One optimizer step on a batch of B examples::

    the batch, split into grad_accum micro-batches of B / grad_accum       (memory: only one is live at a time)
      | each: loss / grad_accum, backward                                 (under several ranks: DDP all-reduces
      |                                                                    the gradients on the last one only)
      v
    clip the global gradient norm, AdamW step, then the EMA copy moves towards the new weights

Under data parallelism the loss runs through ``DistributedDataParallel`` around a small module whose forward
*is* the loss (DDP only synchronises what goes through ``forward``, and the models' losses are methods of their
own). Gradients are averaged over the ranks, so R ranks of B examples take the same step as one process with
R * B (the tests check it). The EMA copy is what :attr:`LossUnit.model` names, so checkpoints hold it and
generation loads it; the weights being optimised travel in the unit's state. CPU runs in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from soundtrail.train.loop import Placement


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW, its schedule, accumulation and the EMA; CPU-sized defaults."""

    lr: float = 3e-4
    min_lr: float = 3e-5  # where the cosine ends
    weight_decay: float = 0.1  # on matrices and embeddings only, never on norms and biases
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    grad_clip: float = 1.0  # max global gradient norm; 0 switches clipping off
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.0  # 0: no EMA, checkpoints hold the optimised weights

    def __post_init__(self) -> None:
        if not 0 < self.min_lr <= self.lr:
            raise ValueError("need 0 < min_lr <= lr")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must not be negative")
        if self.grad_accum < 1:
            raise ValueError("grad_accum must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")


def lr_factor(step: int, total_steps: int, config: OptimizerConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    floor = config.min_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def split_batch(batch: Any, parts: int) -> list[Any]:
    """``batch`` cut into ``parts`` equal micro-batches along its first dimension, whatever its structure.

    Tensors and lists are sliced; tuples and dataclasses are split field by field; anything else (a scalar, a
    string) is repeated in every part.
    """
    if parts == 1:
        return [batch]
    if isinstance(batch, torch.Tensor | list):
        if len(batch) % parts:
            raise ValueError(f"a batch of {len(batch)} does not split into {parts} equal micro-batches")
        size = len(batch) // parts
        return [batch[index * size:(index + 1) * size] for index in range(parts)]
    if isinstance(batch, tuple):
        columns = [split_batch(item, parts) for item in batch]
        return [type(batch)(*(column[index] for column in columns)) if hasattr(batch, "_fields")
                else tuple(column[index] for column in columns) for index in range(parts)]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        columns = {field.name: split_batch(getattr(batch, field.name), parts) for field in dataclasses.fields(batch)}
        return [dataclasses.replace(batch, **{name: column[index] for name, column in columns.items()})
                for index in range(parts)]
    return [batch] * parts


def ema_average(decay: float) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], Any], None]:
    """``AveragedModel``'s averaging function for an EMA whose decay warms up: min(decay, (1 + n) / (10 + n)) after
    n updates, so a short run's average is not dominated by the initial weights."""

    def average(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], updates: Any) -> None:
        n = int(updates)
        weight = 1.0 - min(decay, (1 + n) / (10 + n))
        for mean, value in zip(averaged, current, strict=True):
            mean.lerp_(value, weight)

    return average


class LossOf(nn.Module):
    """``loss_fn(model, batch)`` as a forward, so ``DistributedDataParallel`` sees (and synchronises) the loss."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def data_parallel(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` under DDP on ``device`` (gloo on CPU, NCCL on CUDA: whatever the process group was made with).

    Some parameters sit out some steps (the null-text embedding when no row's text is dropped), so DDP looks for
    unused ones every step rather than wait for their gradients forever.
    """
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def accumulation(wrapped: nn.Module, parts: int) -> list[contextlib.AbstractContextManager]:
    """The context each of ``parts`` micro-batches' forward and backward run in: under DDP, gradients are
    all-reduced on the last micro-batch only."""
    if not isinstance(wrapped, DistributedDataParallel):
        return [contextlib.nullcontext() for _ in range(parts)]
    return [wrapped.no_sync() for _ in range(parts - 1)] + [contextlib.nullcontext()]


class LossUnit:
    """``model`` trained on ``loss_fn(model, batch)`` (which moves what it needs to the model's device)."""

    def __init__(self, kind: str, model: nn.Module, model_config: Any,
                 loss_fn: Callable[[nn.Module, Any], torch.Tensor], optimizer: OptimizerConfig):
        self.kind = kind
        self.online = model  # the weights the optimizer moves
        self.model_config = model_config
        self.settings = dataclasses.asdict(optimizer)
        self.config = optimizer
        self.loss = LossOf(model, loss_fn)
        self.step_module: nn.Module = self.loss  # DDP-wrapped in prepare() under several ranks
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": optimizer.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # nanoGPT's split
        self.optimizer = torch.optim.AdamW(groups, lr=optimizer.lr, betas=optimizer.betas)
        self.ema = (AveragedModel(model, multi_avg_fn=ema_average(optimizer.ema_decay))
                    if optimizer.ema_decay > 0 else None)
        self.device = torch.device("cpu")

    @property
    def model(self) -> nn.Module:
        """What checkpoints hold and generation loads: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.online

    def prepare(self, placement: Placement, device: torch.device) -> None:
        self.device = device
        self.online.to(device).train()
        if self.ema is not None:
            self.ema.to(device).eval()
        if placement.distributed:
            self.step_module = data_parallel(self.loss, device)

    def train_step(self, batch: Any, step: int, total_steps: int) -> dict[str, float]:
        lr = self.config.lr * lr_factor(step, total_steps, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        parts = self.config.grad_accum
        total = 0.0
        for chunk, sync in zip(split_batch(batch, parts), accumulation(self.step_module, parts), strict=True):
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    loss = self.step_module(chunk) / parts
                loss.backward()
            total += loss.item()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.online.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.online)
        return {"loss": total, "lr": lr}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.ema is not None:  # the checkpoint's weights are the EMA's: the optimised ones travel here
            state["online"] = self.online.state_dict()
            state["ema_updates"] = int(self.ema.n_averaged)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.online.load_state_dict(state["online"])
            self.ema.n_averaged.fill_(state["ema_updates"])
