"""Random crops of audio files, read on demand: the codec's training batches, with memory bounded by one batch.

::

    step s:  the global batch, world_size * B (file, start) picks drawn by (seed, s): files in proportion to
             their length, so every second of audio is equally likely
    rank r:  picks r * B .. (r + 1) * B - 1, each read from its file alone (seek, decode that stretch, mix down,
             resample): :func:`soundtrail.audio.read_span`

The global batch does not depend on how many ranks share it, so R ranks of B crops see what one process of
R * B crops sees, every step is a function of (seed, step, rank) (a resumed run reads what the killed run would
have read, and reads nothing before it), and which files each rank read over a run is known without reading
anything (:meth:`AudioCrops.files_read`). Lengths come from the files' headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from soundtrail.audio import probe, read_span
from soundtrail.data.dataset import StepBatches


def sample_segments(lengths: Sequence[int], segment: int, count: int, seed: int, step: int
                    ) -> list[tuple[int, int]]:
    """(file index, start sample) for each of ``count`` crops at ``step``: a pure function of (seed, step).

    Files are drawn in proportion to their length, so every second of audio is equally likely.
    """
    rng = np.random.default_rng([seed, step])
    weights = np.asarray(lengths, dtype=np.float64)
    files = rng.choice(len(lengths), size=count, p=weights / weights.sum())
    return [(int(f), int(rng.integers(0, max(1, lengths[f] - segment + 1)))) for f in files]


@dataclass(frozen=True)
class AudioBatch:
    audio: torch.Tensor  # [B, segment] float32
    files: list[int]  # which file each row was cut from


class AudioCrops(StepBatches):
    """``batch_size`` crops of ``segment`` samples at ``sample_rate`` per step for one rank of ``world_size``."""

    def __init__(self, paths: Sequence[str], sample_rate: int, segment: int, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        super().__init__()
        if not paths:
            raise ValueError("no audio files to crop")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size}")
        self.paths, self.sample_rate, self.segment = list(paths), sample_rate, segment
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        infos = [probe(path) for path in self.paths]
        self.lengths = [info.frames * sample_rate // info.sample_rate for info in infos]

    def picks(self, step: int) -> list[list[tuple[int, int]]]:
        """Every rank's (file index, start) picks at ``step``, rank by rank."""
        every = sample_segments(self.lengths, self.segment, self.batch_size * self.world_size, self.seed, step)
        return [every[rank * self.batch_size:(rank + 1) * self.batch_size] for rank in range(self.world_size)]

    def batch(self, step: int) -> AudioBatch:
        picks = self.picks(step)[self.rank]
        audio = np.stack([read_span(self.paths[index], start, self.segment, self.sample_rate)
                          for index, start in picks])
        return AudioBatch(torch.from_numpy(audio), [index for index, _ in picks])

    def files_read(self, steps: int) -> list[list[str]]:
        """For each rank, the files its crops came from in steps 0 .. ``steps`` - 1 (sorted paths)."""
        read: list[set[int]] = [set() for _ in range(self.world_size)]
        for step in range(steps):
            for files, picks in zip(read, self.picks(step), strict=True):
                files.update(index for index, _ in picks)
        return [sorted(self.paths[index] for index in files) for files in read]
