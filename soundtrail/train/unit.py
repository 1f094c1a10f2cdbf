"""The trainable unit of a model with one loss: AdamW, warm-up + cosine, gradient clipping, bf16 autocast on CUDA.

Both generator families train as a :class:`LossUnit` (the codec, with its discriminator, is its own unit). The
learning rate is a pure function of the step, set before every optimizer step::

    lr(step) = lr * (step + 1) / (warmup + 1)                                   for step < warmup
             = min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2          after, progress 0 -> 1 at the end

so a resumed run needs no scheduler state, and a run extended past its end stretches the cosine to the new end.
CPU runs in float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and its schedule; CPU-sized defaults."""

    lr: float = 3e-4
    min_lr: float = 3e-5  # where the cosine ends
    weight_decay: float = 0.1  # on matrices and embeddings only, never on norms and biases
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    grad_clip: float = 1.0  # max global gradient norm; 0 switches clipping off

    def __post_init__(self) -> None:
        if not 0 < self.min_lr <= self.lr:
            raise ValueError("need 0 < min_lr <= lr")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must not be negative")


def lr_factor(step: int, total_steps: int, config: OptimizerConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    floor = config.min_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LossUnit:
    """``model`` trained on ``loss_fn(model, batch)`` (which moves what it needs to the model's device)."""

    def __init__(self, kind: str, model: nn.Module, model_config: Any,
                 loss_fn: Callable[[nn.Module, Any], torch.Tensor], optimizer: OptimizerConfig):
        self.kind = kind
        self.model = model
        self.model_config = model_config
        self.settings = dataclasses.asdict(optimizer)
        self.config = optimizer
        self.loss_fn = loss_fn
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": optimizer.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # nanoGPT's split
        self.optimizer = torch.optim.AdamW(groups, lr=optimizer.lr, betas=optimizer.betas)
        self.device = torch.device("cpu")

    def prepare(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device).train()

    def train_step(self, batch: Any, step: int, total_steps: int) -> dict[str, float]:
        lr = self.config.lr * lr_factor(step, total_steps, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.loss_fn(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {"loss": loss.item(), "lr": lr}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
