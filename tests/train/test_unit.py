"""The loss unit: gradient accumulation takes the step one big batch takes, the EMA copy is what checkpoints hold,
and a run with an EMA resumes exactly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from soundtrail import checkpoint
from soundtrail.train.loop import LoopConfig, Placement, train_loop
from soundtrail.train.unit import LossUnit, OptimizerConfig, split_batch


@dataclass
class NetConfig:
    width: int = 16


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 1))


def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    step = start
    while True:
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        yield x, x[:, :1] * 2 - x[:, 1:2]
        step += 1


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def unit(model: nn.Module, **settings: object) -> LossUnit:
    return LossUnit("test-net", model, NetConfig(), mse,
                    OptimizerConfig(lr=3e-2, min_lr=3e-3, warmup_steps=2, weight_decay=0.0, **settings))


def test_four_micro_batches_take_the_step_of_one_batch() -> None:
    whole, accumulated = unit(net()), unit(net(), grad_accum=4)
    for trained in (whole, accumulated):
        trained.prepare(Placement(), torch.device("cpu"))
        source = batches(0)
        for step in range(3):
            metrics = trained.train_step(next(source), step, 10)
        trained.loss_seen = metrics["loss"]
    assert accumulated.loss_seen == pytest.approx(whole.loss_seen, rel=1e-5)
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(accumulated.model.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_batch_splits_whatever_its_structure() -> None:
    class Pair(NamedTuple):
        codes: torch.Tensor
        texts: list[str]

    @dataclass(frozen=True)
    class Crops:
        audio: torch.Tensor
        files: list[int]
        rate: int

    parts = split_batch(Pair(torch.arange(6), list("abcdef")), 3)
    assert [part.texts for part in parts] == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert torch.equal(parts[2].codes, torch.tensor([4, 5]))
    crops = split_batch(Crops(torch.zeros(4, 3), [0, 1, 2, 3], 16000), 2)
    assert [(part.files, part.rate, part.audio.shape[0]) for part in crops] == [([0, 1], 16000, 2), ([2, 3], 16000, 2)]
    with pytest.raises(ValueError, match="does not split into 4 equal micro-batches"):
        split_batch((torch.zeros(6), list("abcdef")), 4)


def run(directory: Path, steps: int, stop_at: int | None = None) -> tuple[LossUnit, object]:
    trained = unit(net(), ema_decay=0.9)

    def on_step(step: int, loss: float) -> None:
        if step == stop_at:
            raise KeyboardInterrupt

    result = train_loop(trained, batches, LoopConfig(steps=steps, checkpoint_every=10), directory, on_step=on_step)
    return trained, result


def test_checkpoints_hold_the_ema_and_a_killed_run_resumes_both_copies(tmp_path: Path) -> None:
    whole, result = run(tmp_path / "whole", 40)
    # seen: 4.2 -> 0.12 (means of the first and last 4 steps)
    assert result.final_loss < 0.2 * result.initial_loss, (result.initial_loss, result.final_loss)
    saved = checkpoint.load_file(str(tmp_path / "whole" / checkpoint.WEIGHTS))
    for name, tensor in whole.ema.module.state_dict().items():
        assert torch.equal(saved[name], tensor), name
    assert any(not torch.equal(saved[name], tensor) for name, tensor in whole.online.state_dict().items()), \
        "the EMA lags the optimised weights"

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", 40, stop_at=33)  # last checkpoint at step 30
    resumed, again = run(tmp_path / "killed", 40)
    assert (again.start_step, again.losses) == (30, result.losses)
    for copy in ("ema", "online"):
        expected = whole.ema.module if copy == "ema" else whole.online
        actual = resumed.ema.module if copy == "ema" else resumed.online
        for (name, tensor), other in zip(expected.state_dict().items(), actual.state_dict().values(), strict=True):
            assert torch.equal(tensor, other), (copy, name)
