"""Codebook interleaving patterns: how K parallel streams of codec codes become one sequence of model steps.

A codec frame t carries K codes c[k, t], one per residual codebook (codebook k refines what codebooks < k left).
A language model emits one *step* at a time, each step holding one code per codebook. A pattern is a delay d_k
per codebook: step s holds c[k, s - 1 - d_k], or the special token "." where that frame does not exist::

    delay (MusicGen), d_k = k; K = 4 codebooks, T = 5 frames -> S = T + max(d) + 1 = 9 steps

        step s    0  1  2  3  4  5  6  7  8
        k = 0     .  0  1  2  3  4  .  .  .        the digits are the frame index t of c[k, t]
        k = 1     .  .  0  1  2  3  4  .  .
        k = 2     .  .  .  0  1  2  3  4  .
        k = 3     .  .  .  .  0  1  2  3  4

    parallel, d_k = 0 -> S = T + 1 steps

        step s    0  1  2  3  4  5
        k = 0..3  .  0  1  2  3  4

Step 0 is all special tokens: it is the start token. The model reads steps 0 .. S-2 and its output at position s
predicts step s + 1. Under the delay pattern the K heads predict in parallel and yet, when head k predicts
c[k, t] (step t + 1 + k), the input already held c[j, t] for every coarser codebook j < k: the residual structure
is respected at the cost of K - 1 extra steps. The parallel pattern predicts all K codes of a frame at once from
the previous frames only: fewer steps, weaker finer codebooks.

The index tensors that move codes between the two layouts depend only on (K, T); each pattern builds them once per
(T, device) and keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class PatternLayout(NamedTuple):
    """Where every step's code comes from, for one number of frames T (both tensors [K, S])."""

    frame: torch.Tensor  # long: frame index t of the code at (k, s), clamped into [0, T-1] where invalid
    valid: torch.Tensor  # bool: True where (k, s) holds a real code, False where it holds the special token


class CodebookPattern:
    """A delay per codebook; see the module docstring for the layout it produces."""

    def __init__(self, delays: Sequence[int]):
        if not delays:
            raise ValueError("a pattern needs at least one codebook")
        if any(d < 0 for d in delays):
            raise ValueError(f"delays must be non-negative, got {list(delays)}")
        self.delays = tuple(int(d) for d in delays)
        self._layouts: dict[tuple[int, torch.device], PatternLayout] = {}
        self._revert_index: dict[tuple[int, torch.device], torch.Tensor] = {}

    @property
    def n_codebooks(self) -> int:
        return len(self.delays)

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    def num_steps(self, frames: int) -> int:
        """S: the start step, T frames, and room for the most delayed codebook to finish."""
        return frames + self.max_delay + 1

    def num_frames(self, steps: int) -> int:
        """T for a step sequence of length S (the inverse of :meth:`num_steps`)."""
        frames = steps - self.max_delay - 1
        if frames < 0:
            raise ValueError(f"{steps} steps are too few for delays {self.delays}")
        return frames

    def layout(self, frames: int, device: torch.device | str = "cpu") -> PatternLayout:
        """The cached [K, S] frame index and validity mask for ``frames`` frames."""
        device = torch.device(device)
        key = (frames, device)
        if key not in self._layouts:
            steps = torch.arange(self.num_steps(frames), device=device)
            delays = torch.tensor(self.delays, device=device)
            frame = steps[None, :] - 1 - delays[:, None]
            valid = (frame >= 0) & (frame < frames)
            self._layouts[key] = PatternLayout(frame.clamp(0, max(frames - 1, 0)), valid)
        return self._layouts[key]

    def build(self, codes: torch.Tensor, special: int) -> torch.Tensor:
        """codes [B, K, T] -> step sequence [B, K, S], ``special`` wherever a step holds no code."""
        batch, n_codebooks, frames = self._check(codes, "codes")
        frame, valid = self.layout(frames, codes.device)
        index = frame[None].expand(batch, -1, -1)
        if frames == 0:
            return codes.new_full((batch, n_codebooks, self.num_steps(0)), special)
        gathered = torch.gather(codes, 2, index)
        return torch.where(valid[None], gathered, torch.full_like(gathered, special))

    def revert(self, sequence: torch.Tensor) -> torch.Tensor:
        """Step sequence [B, K, S] -> codes [B, K, T]: code c[k, t] sits at step t + 1 + d_k."""
        batch, _, steps = self._check(sequence, "sequence")
        frames = self.num_frames(steps)
        key = (frames, sequence.device)
        if key not in self._revert_index:
            delays = torch.tensor(self.delays, device=sequence.device)
            self._revert_index[key] = torch.arange(frames, device=sequence.device)[None, :] + 1 + delays[:, None]
        return torch.gather(sequence, 2, self._revert_index[key][None].expand(batch, -1, -1))

    def _check(self, tensor: torch.Tensor, name: str) -> tuple[int, int, int]:
        if tensor.dim() != 3 or tensor.shape[1] != self.n_codebooks:
            raise ValueError(f"{name} must be [B, {self.n_codebooks}, N], got {tuple(tensor.shape)}")
        batch, n_codebooks, length = tensor.shape
        return batch, n_codebooks, length

    def __repr__(self) -> str:
        return f"CodebookPattern(delays={self.delays})"


PATTERNS = ("delay", "parallel")


def make_pattern(name: str, n_codebooks: int) -> CodebookPattern:
    """``delay``: codebook k waits k steps (MusicGen); ``parallel``: every codebook of a frame in one step."""
    if name == "delay":
        return CodebookPattern(range(n_codebooks))
    if name == "parallel":
        return CodebookPattern([0] * n_codebooks)
    raise ValueError(f"unknown pattern {name!r}; choose one of {', '.join(PATTERNS)}")
