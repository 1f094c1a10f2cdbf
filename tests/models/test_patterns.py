"""Codebook patterns: layouts, round trips, special tokens, cached index tensors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundtrail.models.patterns import CodebookPattern, make_pattern

SPECIAL = -1


def codes(batch: int, n_codebooks: int, frames: int) -> torch.Tensor:
    """Distinct non-negative codes, so a misplaced one is visible."""
    return torch.arange(batch * n_codebooks * frames).view(batch, n_codebooks, frames)


def test_delay_layout_matches_the_drawing() -> None:
    pattern = make_pattern("delay", 3)
    sequence = pattern.build(codes(1, 3, 4), SPECIAL)[0]
    expected = torch.tensor([
        [-1, 0, 1, 2, 3, -1, -1],
        [-1, -1, 4, 5, 6, 7, -1],
        [-1, -1, -1, 8, 9, 10, 11],
    ])
    assert torch.equal(sequence, expected)


def test_parallel_layout_is_one_start_step_then_whole_frames() -> None:
    sequence = make_pattern("parallel", 4).build(codes(2, 4, 5), SPECIAL)
    assert sequence.shape == (2, 4, 6)
    assert (sequence[:, :, 0] == SPECIAL).all()
    assert torch.equal(sequence[:, :, 1:], codes(2, 4, 5))


@pytest.mark.parametrize("name", ["delay", "parallel"])
@pytest.mark.parametrize(("n_codebooks", "frames"), [(1, 1), (4, 1), (4, 7), (8, 50)])
def test_round_trip(name: str, n_codebooks: int, frames: int) -> None:
    pattern = make_pattern(name, n_codebooks)
    original = codes(3, n_codebooks, frames)
    sequence = pattern.build(original, SPECIAL)
    assert sequence.shape == (3, n_codebooks, pattern.num_steps(frames))
    assert torch.equal(pattern.revert(sequence), original)


@settings(max_examples=40, deadline=None)
@given(delays=st.lists(st.integers(0, 5), min_size=1, max_size=6), frames=st.integers(1, 20))
def test_round_trip_for_any_delays(delays: list[int], frames: int) -> None:
    pattern = CodebookPattern(delays)
    original = codes(2, len(delays), frames)
    sequence = pattern.build(original, SPECIAL)
    assert torch.equal(pattern.revert(sequence), original)
    # every code appears exactly once; everything else is the special token
    assert int((sequence != SPECIAL).sum()) == original.numel()


def test_first_step_is_all_special_and_last_steps_wind_down() -> None:
    pattern = make_pattern("delay", 4)
    sequence = pattern.build(codes(2, 4, 6), SPECIAL)
    assert (sequence[:, :, 0] == SPECIAL).all()  # the start step
    last = sequence[:, :, -1]  # only the most delayed codebook is still running
    assert (last[:, :3] == SPECIAL).all() and (last[:, 3] != SPECIAL).all()
    for k in range(4):  # codebook k starts after k + 1 special steps and ends 3 - k steps before the end
        row = sequence[0, k]
        assert (row[: k + 1] == SPECIAL).all()
        assert (row[k + 1: k + 7] != SPECIAL).all()
        assert (row[k + 7:] == SPECIAL).all()


def test_valid_mask_marks_exactly_the_code_positions() -> None:
    pattern = make_pattern("delay", 4)
    sequence = pattern.build(codes(1, 4, 5), SPECIAL)[0]
    assert torch.equal(pattern.layout(5).valid, sequence != SPECIAL)


def test_index_tensors_are_built_once_per_length() -> None:
    pattern = make_pattern("delay", 4)
    assert pattern.layout(10) is pattern.layout(10)
    assert pattern.layout(10) is not pattern.layout(11)
    pattern.revert(pattern.build(codes(1, 4, 10), SPECIAL))
    assert len(pattern._revert_index) == 1


def test_bad_inputs_are_refused() -> None:
    pattern = make_pattern("delay", 4)
    with pytest.raises(ValueError, match="must be"):
        pattern.build(codes(1, 3, 5), SPECIAL)
    with pytest.raises(ValueError, match="too few"):
        pattern.revert(torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown pattern"):
        make_pattern("flatten", 4)
    with pytest.raises(ValueError, match="non-negative"):
        CodebookPattern([0, -1])
