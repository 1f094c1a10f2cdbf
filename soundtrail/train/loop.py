"""The one training loop: the codec and every generator family train through it (checkpoints, exact resume).

The loop knows no loss and no optimizer. It trains a :class:`TrainUnit`, which owns its model, its optimizers
and what one optimizer step is (:class:`~soundtrail.train.unit.LossUnit`: one model, one loss, AdamW with warm-up
and cosine; :class:`~soundtrail.train.codec.CodecUnit`: the codec with its discriminator and that one's own
optimizer), on the batches of ``make_batches(start_step)``: the batches from that step on, a pure function of the
step, so a resumed run reads what the killed run would have read. The loop owns the rest::

    for step in start .. steps - 1:
        metrics = unit.train_step(next(batches), step, steps)     # {"loss": ..., anything else to log}
        every checkpoint_every steps and at the last: a step checkpoint
        on_step(step + 1, metrics["loss"])

``checkpoint_dir`` holds::

    steps/step-00000200/   every checkpoint_every steps and at the last step: train_state.pt (the unit's state,
                           the loss history, every RNG) first, then model.safetensors, then config.json; the
                           older one is removed after
    model.safetensors, config.json, train_state.pt     the finished model (the same state as the last step
                           directory, which is removed only once this is complete)

A run that finds a finished step directory (or a finished model with its train state) continues from it: weights,
the unit's state and every RNG come back, so a killed and resumed run ends with the same weights as one that was
never stopped. The same call after the run has finished trains nothing and reports the stored result; a call
with more steps extends the finished run. Only the same run continues a checkpoint: config.json's ``kind``,
``config`` (the model's), ``train`` (the unit's settings and the seed) and ``data`` (what the batches come from,
where the folder's name does not already say it) must all match; anything else is refused, never mixed.

No Prefect or Ray here: flows call this in-process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from soundtrail import checkpoint

log = logging.getLogger(__name__)

STEPS_DIR = "steps"
SUMMARY_WINDOW = 10  # initial/final loss: means over this many steps (or a tenth of the run, if fewer)

StepCallback = Callable[[int, float], None]  # on_step(steps done, that step's loss)
MakeBatches = Callable[[int], Iterator[Any]]  # make_batches(start_step) -> the batches from that step on


class TrainUnit(Protocol):
    """What the loop trains: a model, its optimizers, and what one optimizer step of it is."""

    kind: str  # config.json "kind": what a loader checks before rebuilding the model
    model: nn.Module  # the weights a checkpoint holds (model.safetensors)
    model_config: Any  # config.json "config" (a dataclass or a JSON-plain dict): enough to rebuild ``model``
    settings: Mapping[str, Any]  # config.json "train": how it optimises; a resumed run must have the same

    def prepare(self, device: torch.device) -> None:
        """Move everything the step uses to ``device`` and into training mode (before any state is loaded)."""
        ...

    def train_step(self, batch: Any, step: int, total_steps: int) -> dict[str, float]:
        """One optimizer step on ``batch`` at 0-based ``step`` of ``total_steps``; metrics, ``loss`` among them."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything but the model's weights that an exact resume needs: optimizers, auxiliary modules, counts."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    """How long to train and how often to checkpoint; the unit's own settings say how it optimises."""

    steps: int = 1000
    checkpoint_every: int = 200
    log_every: int = 50
    seed: int = 0  # torch's global RNG on a fresh start (a resume restores the RNG states instead)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("steps, checkpoint_every and log_every must be at least 1")


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


def summarize(losses: list[float]) -> tuple[float, float]:
    """(mean of the first, mean of the last) SUMMARY_WINDOW losses, windows shrunk to a tenth of short runs."""
    if not losses:
        return math.nan, math.nan
    window = max(1, min(SUMMARY_WINDOW, len(losses) // 10))
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def _plain(value: Any) -> Any:
    """A dataclass or mapping as JSON would give it back (tuples become lists), for comparing with config.json."""
    return json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value))


def _identity(unit: TrainUnit, config: LoopConfig, data: Any) -> dict[str, Any]:
    """What a checkpoint must match to be continued. ``steps`` may grow, so it is left out."""
    return {"kind": unit.kind, "config": _plain(unit.model_config),
            "train": _plain({**unit.settings, "seed": config.seed}), "data": _plain(data)}


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
    if {key: document.get(key) for key in identity} != identity:
        raise ValueError(f"{directory} holds a different run (kind, model config, training settings or data "
                         "differ); train into a new directory")


def _save(directory: Path, step: int, unit: TrainUnit, identity: dict[str, Any], losses: list[float],
          metadata: Mapping[str, Any]) -> None:
    """Train state first, config.json last: a directory with config.json is complete."""
    checkpoint.save_train_state(directory, step, {"unit": unit.state_dict(), "losses": losses})
    initial, final = summarize(losses)
    checkpoint.save_weights(directory, unit.model, identity["kind"], identity["config"], **metadata,
                            train=identity["train"], data=identity["data"], step=step, initial_loss=initial,
                            final_loss=final)


def _save_step(checkpoint_dir: Path, step: int, unit: TrainUnit, identity: dict[str, Any], losses: list[float],
               metadata: Mapping[str, Any]) -> None:
    """Write steps/step-N, then drop the older step directories."""
    directory = checkpoint_dir / STEPS_DIR / f"step-{step:08d}"
    if directory.exists():  # an unfinished leftover of a killed run
        shutil.rmtree(directory)
    _save(directory, step, unit, identity, losses, metadata)
    for older in (checkpoint_dir / STEPS_DIR).glob("step-*"):
        if older != directory:
            shutil.rmtree(older)


def train_loop(unit: TrainUnit, make_batches: MakeBatches, config: LoopConfig, checkpoint_dir: Path, *,
               data: Any = None, metadata: Mapping[str, Any] | None = None,
               on_step: StepCallback | None = None) -> TrainResult:
    """Train ``unit`` for ``config.steps`` optimizer steps in all, resuming from ``checkpoint_dir`` when it can.

    ``data`` (JSON-plain) names what the batches come from when ``checkpoint_dir`` is not already named after it;
    a checkpoint made from other data is refused. ``metadata`` (JSON-plain) goes into every checkpoint's
    config.json beside it, e.g. the shards the run reads. ``on_step(step, loss)`` runs after each step (after that
    step's checkpoint, if any). ``make_batches`` is called only when there is a step to train.
    """
    checkpoint_dir = Path(checkpoint_dir)
    metadata = dict(metadata or {})
    identity = _identity(unit, config, data)
    device = checkpoint.pick_device()
    unit.prepare(device)

    start, losses = 0, []
    resume = _resume_point(checkpoint_dir)
    if resume is not None:
        _check_same_run(resume, identity)
        checkpoint.load_weights(resume, unit.model, device)
        start, state = checkpoint.load_train_state(resume)
        unit.load_state_dict(state["unit"])
        losses = list(state["losses"])
        if start > config.steps:
            raise ValueError(f"{resume} already holds {start} steps, more than the {config.steps} asked for")
        log.info("resuming %s at step %d of %d", unit.kind, start, config.steps)
    else:
        torch.manual_seed(config.seed)

    if resume == checkpoint_dir and start == config.steps:  # finished before: nothing to train or write
        initial, final = summarize(losses)
        return TrainResult(checkpoint_dir, start, 0, config.steps, losses, initial, final, str(device))

    batches = make_batches(start)
    for step in range(start, config.steps):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError(f"make_batches ran out at step {step} of {config.steps}") from None
        metrics = unit.train_step(batch, step, config.steps)
        loss = metrics["loss"]
        if not math.isfinite(loss):
            raise FloatingPointError(f"{unit.kind} loss is {loss} at step {step + 1}; lower lr or check the data")
        losses.append(loss)

        done = step + 1
        if done % config.log_every == 0:
            log.info("%s step %d/%d %s", unit.kind, done, config.steps,
                     " ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
        if done % config.checkpoint_every == 0 or done == config.steps:
            _save_step(checkpoint_dir, done, unit, identity, losses, metadata)
        if on_step is not None:
            on_step(done, loss)

    # The last step directory stays until the model is complete beside it: a kill in between resumes from it.
    _save(checkpoint_dir, config.steps, unit, identity, losses, metadata)
    shutil.rmtree(checkpoint_dir / STEPS_DIR, ignore_errors=True)
    initial, final = summarize(losses)
    return TrainResult(checkpoint_dir, start, config.steps - start, config.steps, losses, initial, final,
                       str(device))
