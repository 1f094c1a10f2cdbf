"""The shared training loop: schedule, checkpoints, exact resume after a kill, refusal of a foreign checkpoint."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from soundtrail import checkpoint
from soundtrail.train.loop import STEPS_DIR, LoopConfig, train_loop
from soundtrail.train.unit import LossUnit, OptimizerConfig, lr_factor


@dataclass
class NetConfig:
    width: int = 16


class Net(nn.Module):
    """Dropout makes the result depend on the RNG state, which a resumed step must draw again."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, config.width), nn.GELU(), nn.Dropout(0.2),
                                    nn.Linear(config.width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def make_batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    step = start
    while True:
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(32, 4, generator=generator)
        yield x, x[:, :1] * 2 - x[:, 1:2] + 0.5 * x[:, 2:3]
        step += 1


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def loop(steps: int) -> LoopConfig:
    return LoopConfig(steps=steps, checkpoint_every=10, log_every=10)


def unit(model: nn.Module, loss=mse, **overrides: object) -> LossUnit:
    settings = {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 5, **overrides}
    return LossUnit("test-net", model, NetConfig(), loss, OptimizerConfig(**settings))


def run(directory: Path, steps: int, stop_at: int | None = None, data: object = None, **overrides: object):
    """Train a fresh Net (same init every time); ``stop_at`` kills the run right after that step."""
    torch.manual_seed(0)
    model = Net(NetConfig())

    def on_step(step: int, loss: float) -> None:
        if step == stop_at:
            raise KeyboardInterrupt

    result = train_loop(unit(model, **overrides), make_batches, loop(steps), directory, data=data,
                        metadata={"shards": ["a", "b"]}, on_step=on_step)
    return model, result


def test_schedule_warms_up_then_decays_to_min_lr() -> None:
    config = OptimizerConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    factors = [lr_factor(step, 100, config) for step in range(101)]
    assert factors[0] == pytest.approx(1 / 11)
    assert factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[100] == pytest.approx(0.1)
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)


def test_training_writes_a_complete_checkpoint_and_lowers_the_loss(tmp_path: Path) -> None:
    model, result = run(tmp_path / "run", 60)
    assert (result.start_step, result.steps_run, result.total_steps) == (0, 60, 60)
    assert len(result.losses) == 60
    assert result.final_loss < 0.4 * result.initial_loss
    assert checkpoint.is_complete(tmp_path / "run") and not (tmp_path / "run" / STEPS_DIR).exists()
    document = checkpoint.read_config(tmp_path / "run")
    assert document["kind"] == "test-net" and document["step"] == 60 and document["shards"] == ["a", "b"]
    assert document["final_loss"] == pytest.approx(result.final_loss)
    restored = Net(NetConfig())
    checkpoint.load_weights(tmp_path / "run", restored)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    reference, whole = run(tmp_path / "whole", 45)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", 45, stop_at=27)  # last checkpoint at step 20: steps 21..27 are redone
    assert [d.name for d in (tmp_path / "killed" / STEPS_DIR).iterdir()] == ["step-00000020"]
    assert not checkpoint.is_complete(tmp_path / "killed")
    resumed, result = run(tmp_path / "killed", 45)
    assert (result.start_step, result.steps_run) == (20, 25)
    assert result.losses == whole.losses
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_a_finished_run_is_reported_not_retrained_and_can_be_extended(tmp_path: Path) -> None:
    _, first = run(tmp_path / "run", 30)
    _, again = run(tmp_path / "run", 30)
    assert (again.start_step, again.steps_run, again.losses) == (30, 0, first.losses)
    _, longer = run(tmp_path / "run", 40)
    assert (longer.start_step, longer.steps_run, len(longer.losses)) == (30, 10, 40)
    assert longer.losses[:30] == first.losses
    assert checkpoint.read_config(tmp_path / "run")["step"] == 40


def test_a_different_run_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    run(tmp_path / "run", 20, data=["file-a"])
    with pytest.raises(ValueError, match="different run"):
        run(tmp_path / "run", 20, data=["file-a"], lr=5e-3)
    with pytest.raises(ValueError, match="different run"):
        run(tmp_path / "run", 20, data=["file-b"])
    with pytest.raises(ValueError, match="more than"):
        run(tmp_path / "run", 10, data=["file-a"])


def test_diverging_loss_and_short_data_are_errors(tmp_path: Path) -> None:
    def nan_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return mse(model, batch) * math.nan

    with pytest.raises(FloatingPointError, match="step 1"):
        train_loop(unit(Net(NetConfig()), nan_loss), make_batches, loop(5), tmp_path / "nan")

    def three_batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = make_batches(start)
        for _ in range(3):
            yield next(batches)

    with pytest.raises(ValueError, match="ran out at step 3"):
        train_loop(unit(Net(NetConfig())), three_batches, loop(5), tmp_path / "short")
