"""The training loop every generator trainer shares: AdamW, warm-up + cosine, clipping, checkpoints, exact resume.

A trainer supplies the model, ``make_batches(start_step)`` (the batches from that step on: a pure function of the
step, so a resumed run reads what the killed run would have read) and ``loss_fn(model, batch)``. The loop owns the
rest::

    lr(step) = lr * (step + 1) / (warmup + 1)                                   for step < warmup
             = min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2          after, progress 0 -> 1 at the end

Checkpoints use :mod:`soundtrail.checkpoint`; ``checkpoint_dir`` holds::

    steps/step-00000200/   every checkpoint_every steps and at the last step: train_state.pt (optimizer,
                           scheduler, RNG, loss history) first, then model.safetensors, then config.json;
                           the older one is removed after
    model.safetensors, config.json, train_state.pt     the finished model (the same state as the last step
                           directory, which is removed only once this is complete)

A run that finds a finished step directory (or a finished model with its train state) continues from it: weights,
optimizer, scheduler and every RNG come back, so a killed and resumed run ends with the same weights as one that
was never stopped. The same call after the run has finished trains nothing and reports the stored result; a call
with more steps extends the finished run (the cosine then stretches to the new end).

No Prefect or Ray here: flows call this in-process. bf16 autocast on CUDA only; CPU runs in float32.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from soundtrail import checkpoint

log = logging.getLogger(__name__)

Batch = TypeVar("Batch")
STEPS_DIR = "steps"
SUMMARY_WINDOW = 10  # initial/final loss: means over this many steps (or a tenth of the run, if fewer)


@dataclass
class TrainLoopConfig:
    """Optimisation settings; CPU-sized defaults."""

    steps: int = 1000
    lr: float = 3e-4
    min_lr: float = 3e-5  # where the cosine ends
    weight_decay: float = 0.1  # on matrices and embeddings only, never on norms and biases
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    grad_clip: float = 1.0  # max global gradient norm; 0 switches clipping off
    checkpoint_every: int = 200
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("steps, checkpoint_every and log_every must be at least 1")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError("need 0 < min_lr <= lr")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must not be negative")


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    start_step: int  # where this call began: 0 fresh, k after a resume, == total_steps if already finished
    steps_run: int  # optimizer steps this call took
    total_steps: int
    losses: list[float]  # one per step of the whole run, resumed parts included
    initial_loss: float  # mean of the first few losses
    final_loss: float  # mean of the last few losses
    device: str


def lr_factor(step: int, config: TrainLoopConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.min_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainLoopConfig) -> tuple[torch.optim.AdamW,
                                                                       torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (decay on tensors of rank >= 2, as nanoGPT) with the warm-up + cosine schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    return optimizer, scheduler


def summarize(losses: list[float]) -> tuple[float, float]:
    """(mean of the first, mean of the last) SUMMARY_WINDOW losses, windows shrunk to a tenth of short runs."""
    if not losses:
        return math.nan, math.nan
    window = max(1, min(SUMMARY_WINDOW, len(losses) // 10))
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def _identity(kind: str, model_config: Any, config: TrainLoopConfig) -> dict[str, Any]:
    """What a checkpoint must match to be continued (JSON-normalised). ``steps`` may grow, so it is left out."""
    model_dict = dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else dict(model_config)
    train = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("steps", "log_every",
                                                                             "checkpoint_every")}
    return json.loads(json.dumps({"kind": kind, "config": model_dict, "train": train}))


def _resume_point(checkpoint_dir: Path) -> Path | None:
    """The newest finished step directory, else the finished model if it kept its train state."""
    finished = [d for d in sorted((checkpoint_dir / STEPS_DIR).glob("step-*")) if checkpoint.is_complete(d)]
    if finished:
        return finished[-1]
    if checkpoint.is_complete(checkpoint_dir) and (checkpoint_dir / checkpoint.TRAIN_STATE).exists():
        return checkpoint_dir
    return None


def _check_same_run(directory: Path, identity: dict[str, Any]) -> None:
    document = checkpoint.read_config(directory)
    found = {"kind": document.get("kind"), "config": document.get("config"), "train": document.get("train")}
    if found != identity:
        raise ValueError(f"{directory} holds a different run (kind, model config or training settings differ); "
                         "train into a new directory")


def _save(directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LambdaLR, identity: dict[str, Any], model_config: Any,
          losses: list[float], metadata: dict[str, Any]) -> None:
    """Train state first, config.json last: a directory with config.json is complete."""
    checkpoint.save_train_state(directory, step, optimizer, scheduler, losses=losses)
    initial, final = summarize(losses)
    checkpoint.save_weights(directory, model, identity["kind"], model_config, **metadata, train=identity["train"],
                            step=step, initial_loss=initial, final_loss=final)


def train_loop(model: nn.Module, make_batches: Callable[[int], Iterator[Batch]],
               loss_fn: Callable[[nn.Module, Batch], torch.Tensor], cfg: TrainLoopConfig, checkpoint_dir: Path,
               kind: str, model_config: Any, metadata: dict[str, Any] | None = None,
               on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps in all, resuming from ``checkpoint_dir`` when it can.

    ``loss_fn`` gets each batch as ``make_batches`` yields it and moves what it needs to the model's device.
    ``metadata`` (JSON-serialisable) goes into every checkpoint's config.json, e.g. the shards the run reads.
    ``on_step(step, loss)`` runs after each step (after that step's checkpoint, if any). Seeds torch's global RNG
    with ``cfg.seed`` on a fresh start; a resume restores the RNG states instead.
    """
    checkpoint_dir = Path(checkpoint_dir)
    metadata = dict(metadata or {})
    identity = _identity(kind, model_config, cfg)
    device = checkpoint.pick_device()
    model.to(device)
    optimizer, scheduler = make_optimizer(model, cfg)

    start, losses = 0, []
    resume = _resume_point(checkpoint_dir)
    if resume is not None:
        _check_same_run(resume, identity)
        checkpoint.load_weights(resume, model, device)
        state = checkpoint.load_train_state(resume, optimizer, scheduler)
        start, losses = state["step"], list(state["extra"]["losses"])
        if start > cfg.steps:
            raise ValueError(f"{resume} already holds {start} steps, more than the {cfg.steps} asked for")
        log.info("resuming %s at step %d of %d", kind, start, cfg.steps)
    else:
        torch.manual_seed(cfg.seed)

    if resume == checkpoint_dir and start == cfg.steps:  # finished before: nothing to train or write
        initial, final = summarize(losses)
        return TrainResult(checkpoint_dir, start, 0, cfg.steps, losses, initial, final, str(device))

    model.train()
    batches = make_batches(start)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step in range(start, cfg.steps):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError(f"make_batches ran out at step {step} of {cfg.steps}") from None
        with autocast:
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{kind} loss is {value} at step {step + 1}; lower lr or check the data")
        losses.append(value)

        done = step + 1
        if done % cfg.log_every == 0:
            log.info("%s step %d/%d loss %.4f lr %.2e", kind, done, cfg.steps, value, scheduler.get_last_lr()[0])
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save_step(checkpoint_dir, done, model, optimizer, scheduler, identity, model_config, losses, metadata)
        if on_step is not None:
            on_step(done, value)

    # The last step directory stays until the model is complete beside it: a kill in between resumes from it.
    _save(checkpoint_dir, cfg.steps, model, optimizer, scheduler, identity, model_config, losses, metadata)
    shutil.rmtree(checkpoint_dir / STEPS_DIR, ignore_errors=True)
    initial, final = summarize(losses)
    return TrainResult(checkpoint_dir, start, cfg.steps - start, cfg.steps, losses, initial, final, str(device))


def _save_step(checkpoint_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LambdaLR, identity: dict[str, Any], model_config: Any,
               losses: list[float], metadata: dict[str, Any]) -> None:
    """Write steps/step-N, then drop the older step directories."""
    directory = checkpoint_dir / STEPS_DIR / f"step-{step:08d}"
    if directory.exists():  # an unfinished leftover of a killed run
        shutil.rmtree(directory)
    _save(directory, step, model, optimizer, scheduler, identity, model_config, losses, metadata)
    for older in (checkpoint_dir / STEPS_DIR).glob("step-*"):
        if older != directory:
            shutil.rmtree(older)
