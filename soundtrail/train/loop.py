"""The one training loop: the codec and every generator family train through it (checkpoints, exact resume).

The loop knows no loss and no optimizer. It trains a :class:`TrainUnit`, which owns its model, its optimizers
and what one optimizer step is (:class:`~soundtrail.train.unit.LossUnit`: one model, one loss, AdamW with warm-up
and cosine, gradient accumulation, an EMA copy; :class:`~soundtrail.train.codec.CodecUnit`: the codec with its
discriminator and that one's own optimizer), on the batches of ``make_batches(start_step)``: the batches from
that step on, a pure function of the step (and of the rank), so a resumed run reads what the killed run would
have read. The loop owns the rest::

    for step in start .. steps - 1:
        torch.manual_seed(step_seed(seed, step, rank))            # every draw of the step: a function of these
        metrics = unit.train_step(next(batches), step, steps)     # {"loss": ..., anything else to log}
        loss: the mean over the ranks
        every checkpoint_every steps and at the last: a step checkpoint (all ranks call the store; rank 0 writes)
        on_step(step + 1, loss)

One process or many: a :class:`Placement` says which rank of how many this process is, on which device, and
where step checkpoints go (a :class:`CheckpointStore`). The default is one process whose step checkpoints are
folders under ``checkpoint_dir`` (:class:`LocalSteps`); data-parallel runs on Ray Train get theirs from the
flows, which report them to Ray Train (the stage code never imports Ray). Under several ranks the unit wraps its
model for data parallelism in ``prepare``; the weights, optimizer state and EMA are then the same on every rank,
so rank 0's checkpoint is everyone's. Reseeding torch from (seed, step, rank) before every step makes dropout,
noise and timesteps a function of the step, so nothing about the random state needs saving per rank.

``checkpoint_dir`` holds::

    steps/step-00000200/   every checkpoint_every steps and at the last step: train_state.pt (the unit's state,
                           the loss history) first, then model.safetensors, then config.json; the older one is
                           removed after
    model.safetensors, config.json, train_state.pt     the finished model (the same state as the last step
                           directory, which is removed only once this is complete)

A run that finds a finished step checkpoint (or a finished model with its train state) continues from it:
weights and the unit's state come back, so a killed and resumed run ends with the same weights as one that was
never stopped. The same call after the run has finished trains nothing and reports the stored result; a call
with more steps extends the finished run. Only the same run continues a checkpoint: config.json's ``kind``,
``config`` (the model's, its preset among it), ``train`` (the unit's settings, the seed and the world size) and
``data`` (what the batches come from, where the folder's name does not already say it) must all match; anything
else is refused, naming what differs, never mixed.

No Prefect or Ray here: flows call this in-process, or in every Ray Train worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from soundtrail import checkpoint

log = logging.getLogger(__name__)

STEPS_DIR = "steps"
SUMMARY_WINDOW = 10  # initial/final loss: means over this many steps (or a tenth of the run, if fewer)

StepCallback = Callable[[int, float], None]  # on_step(steps done, that step's loss)
MakeBatches = Callable[[int], Iterator[Any]]  # make_batches(start_step) -> the batches from that step on
WriteCheckpoint = Callable[[Path], None]  # fills a step checkpoint directory


class CheckpointStore(Protocol):
    """Where step checkpoints go and where a resumed run finds the newest."""

    def latest(self) -> Path | None:
        """The newest complete step checkpoint, or None."""
        ...

    def save(self, step: int, write: WriteCheckpoint | None, metrics: Mapping[str, float]) -> None:
        """Every rank calls this at the same steps; rank 0 passes ``write`` (the others None)."""
        ...

    def finish(self) -> None:
        """The finished model is complete beside the step checkpoints: drop what is no longer needed."""
        ...


class LocalSteps:
    """Step checkpoints as folders ``checkpoint_dir/steps/step-N``; only the newest is kept."""

    def __init__(self, checkpoint_dir: Path):
        self.root = Path(checkpoint_dir) / STEPS_DIR

    def latest(self) -> Path | None:
        finished = [d for d in sorted(self.root.glob("step-*")) if checkpoint.is_complete(d)]
        return finished[-1] if finished else None

    def save(self, step: int, write: WriteCheckpoint | None, metrics: Mapping[str, float]) -> None:
        if write is None:
            return
        directory = self.root / step_dir_name(step)
        if directory.exists():  # an unfinished leftover of a killed run
            shutil.rmtree(directory)
        write(directory)
        for older in self.root.glob("step-*"):
            if older != directory:
                shutil.rmtree(older)

    def finish(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


@dataclass(frozen=True)
class Placement:
    """Which data-parallel rank of how many this process is, its device, and where its step checkpoints go.

    The default is the one process of a single-machine run: rank 0 of 1, CUDA when present, step checkpoints
    under the checkpoint folder. Ray Train workers get theirs from the flows.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # None: checkpoint.pick_device()
    store: CheckpointStore | None = None  # None: LocalSteps(checkpoint_dir)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not one of {self.world_size}")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


Work = Callable[[Placement, StepCallback | None], "TrainResult"]  # one rank's training: placement, on_step


class Launcher(Protocol):
    """Runs ``work`` on ``world_size`` ranks and returns the finished run (what rank 0 wrote)."""

    world_size: int

    def __call__(self, work: Work, checkpoint_dir: Path, on_step: StepCallback | None) -> TrainResult: ...


class InProcess:
    """The launcher of a single-process run: ``work`` here and now, as rank 0 of 1."""

    world_size = 1

    def __call__(self, work: Work, checkpoint_dir: Path, on_step: StepCallback | None) -> TrainResult:
        return work(Placement(), on_step)


def step_seed(seed: int, step: int, rank: int) -> int:
    """torch's seed for one optimizer step of one rank: the ranks draw differently, every step afresh."""
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class TrainUnit(Protocol):
    """What the loop trains: a model, its optimizers, and what one optimizer step of it is."""

    kind: str  # config.json "kind": what a loader checks before rebuilding the model
    model: nn.Module  # the weights a checkpoint holds (model.safetensors)
    model_config: Any  # config.json "config" (a dataclass or a JSON-plain dict): enough to rebuild ``model``
    settings: Mapping[str, Any]  # config.json "train": how it optimises; a resumed run must have the same

    def prepare(self, placement: Placement, device: torch.device) -> None:
        """Move everything the step uses to ``device``, into training mode and, under several ranks, into data
        parallelism (before any state is loaded)."""
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
    seed: int = 0  # with the step and the rank, torch's seed for each step (:func:`step_seed`)

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


def _identity(unit: TrainUnit, config: LoopConfig, data: Any, world_size: int) -> dict[str, Any]:
    """What a checkpoint must match to be continued. ``steps`` may grow, so it is left out."""
    return {"kind": unit.kind, "config": _plain(unit.model_config),
            "train": _plain({**unit.settings, "seed": config.seed, "world_size": world_size}),
            "data": _plain(data)}


def _resume_point(checkpoint_dir: Path, store: CheckpointStore) -> Path | None:
    """The newest finished step checkpoint, else the finished model if it kept its train state."""
    latest = store.latest()
    if latest is not None:
        return latest
    if checkpoint.is_complete(checkpoint_dir) and (checkpoint_dir / checkpoint.TRAIN_STATE).exists():
        return checkpoint_dir
    return None


def _differences(stored: Any, wanted: Any, path: str) -> list[str]:
    """Where two JSON documents differ, as ``path: stored there, wanted here`` lines (nested keys dotted)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return [line for key in sorted(set(stored) | set(wanted), key=str)
                for line in _differences(stored.get(key), wanted.get(key), f"{path}.{key}" if path else key)]
    return [] if stored == wanted else [f"{path}: {stored!r} there, {wanted!r} here"]


def _check_same_run(directory: Path, identity: dict[str, Any]) -> None:
    document = checkpoint.read_config(directory)
    if document.get("kind") != identity["kind"]:
        raise ValueError(f"{directory} holds a {document.get('kind')!r} checkpoint, not {identity['kind']!r}; "
                         "train into a new directory")
    differences = _differences({key: document.get(key) for key in identity}, identity, "")
    if differences:
        raise ValueError(f"{directory} holds a different run ({'; '.join(differences)}); train into a new "
                         "directory")


def _save(directory: Path, step: int, unit: TrainUnit, identity: dict[str, Any], losses: list[float],
          metadata: Mapping[str, Any]) -> None:
    """Train state first, config.json last: a directory with config.json is complete."""
    checkpoint.save_train_state(directory, step, {"unit": unit.state_dict(), "losses": losses})
    initial, final = summarize(losses)
    checkpoint.save_weights(directory, unit.model, identity["kind"], identity["config"], **metadata,
                            train=identity["train"], data=identity["data"], step=step, initial_loss=initial,
                            final_loss=final)


def _mean_over_ranks(value: float, placement: Placement, device: torch.device) -> float:
    if not placement.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item() / placement.world_size


def finished_result(checkpoint_dir: Path, start_step: int | None = None) -> TrainResult:
    """The :class:`TrainResult` of the finished model in ``checkpoint_dir`` (what a launcher of other processes
    returns); ``start_step``: where the last call began, if known (else: nothing left to train)."""
    document = checkpoint.read_config(checkpoint_dir)
    total = int(document["step"])
    # mmap: only the loss history is read, not the optimizer state beside it (gigabytes for a large model)
    state = torch.load(Path(checkpoint_dir) / checkpoint.TRAIN_STATE, map_location="cpu", weights_only=False,
                       mmap=True)
    losses = list(state["state"]["losses"])
    start = total if start_step is None else start_step
    initial, final = summarize(losses)
    return TrainResult(Path(checkpoint_dir), start, total - start, total, losses, initial, final,
                       document.get("device", ""))


def train_loop(unit: TrainUnit, make_batches: MakeBatches, config: LoopConfig, checkpoint_dir: Path, *,
               data: Any = None, metadata: Mapping[str, Any] | None = None, on_step: StepCallback | None = None,
               placement: Placement | None = None) -> TrainResult:
    """Train ``unit`` for ``config.steps`` optimizer steps in all, resuming from ``checkpoint_dir`` when it can.

    ``data`` (JSON-plain) names what the batches come from when ``checkpoint_dir`` is not already named after it;
    a checkpoint made from other data is refused. ``metadata`` (JSON-plain) goes into every checkpoint's
    config.json beside it, e.g. the shards the run reads. ``on_step(step, loss)`` runs after each step (after that
    step's checkpoint, if any). ``make_batches`` is called only when there is a step to train. ``placement``:
    this process's rank, device and checkpoint store (default: the one process of a single-machine run).
    """
    checkpoint_dir = Path(checkpoint_dir)
    placement = placement or Placement()
    store = placement.store or LocalSteps(checkpoint_dir)
    writer = placement.rank == 0
    identity = _identity(unit, config, data, placement.world_size)
    device = placement.device or checkpoint.pick_device()
    metadata = {**(metadata or {}), "device": str(device)}
    unit.prepare(placement, device)

    start, losses = 0, []
    resume = _resume_point(checkpoint_dir, store)
    if resume is not None:
        _check_same_run(resume, identity)
        checkpoint.load_weights(resume, unit.model, device)
        start, state = checkpoint.load_train_state(resume)
        unit.load_state_dict(state["unit"])
        losses = list(state["losses"])
        if start > config.steps:
            raise ValueError(f"{resume} already holds {start} steps, more than the {config.steps} asked for")
        log.info("resuming %s at step %d of %d", unit.kind, start, config.steps)

    if resume == checkpoint_dir and start == config.steps:  # finished before: nothing to train or write
        initial, final = summarize(losses)
        return TrainResult(checkpoint_dir, start, 0, config.steps, losses, initial, final, str(device))

    batches = make_batches(start)
    for step in range(start, config.steps):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError(f"make_batches ran out at step {step} of {config.steps}") from None
        torch.manual_seed(step_seed(config.seed, step, placement.rank))
        metrics = unit.train_step(batch, step, config.steps)
        loss = _mean_over_ranks(metrics["loss"], placement, device)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{unit.kind} loss is {loss} at step {step + 1}; lower lr or check the data")
        losses.append(loss)

        done = step + 1
        if done % config.log_every == 0:
            log.info("%s step %d/%d %s", unit.kind, done, config.steps,
                     " ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
        if done % config.checkpoint_every == 0 or done == config.steps:
            def write(directory: Path, done: int = done) -> None:
                _save(directory, done, unit, identity, losses, metadata)

            store.save(done, write if writer else None, {"step": done, "loss": loss, "start_step": start})
        if on_step is not None:
            on_step(done, loss)

    # The last step checkpoint stays until the model is complete beside it: a kill in between resumes from it.
    if writer:
        _save(checkpoint_dir, config.steps, unit, identity, losses, metadata)
        store.finish()
    initial, final = summarize(losses)
    return TrainResult(checkpoint_dir, start, config.steps - start, config.steps, losses, initial, final,
                       str(device))
