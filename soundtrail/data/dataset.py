"""A torch ``IterableDataset`` that streams token shards with a shuffle buffer.

Shards are split first across distributed ranks, then across DataLoader workers, so every
(rank, worker) pair reads a disjoint set of files and nothing is read twice per epoch. Order is
a pure function of ``(seed, epoch)``: a training run that resumes at step N rebuilds the same
stream and skips the first ``N * batch_size`` examples (:meth:`ShardStream.batches`), which is
what makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from soundtrail.data.shards import iter_segments


class ShardStream(IterableDataset):
    """Examples ``{"codes": LongTensor [K, frames], "text": str, "asset_id": str}`` from shards.

    Segments shorter than ``frames`` are skipped; longer ones give one random crop per pass.
    ``epochs=None`` repeats forever (training); a finite number ends the stream.
    """

    def __init__(self, files: list[Path], frames: int, *, seed: int = 0, shuffle_buffer: int = 256,
                 epochs: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if not files:
            raise ValueError("no shards to read: run `soundtrail tokenize` first")
        self.files = [Path(file) for file in files]
        self.frames = frames
        self.seed = seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.epochs = epochs
        self.rank = rank
        self.world_size = world_size

    def _my_files(self, epoch: int) -> list[Path]:
        files = list(self.files)
        random.Random(self.seed * 1_000_003 + epoch).shuffle(files)
        files = files[self.rank::self.world_size]
        info = get_worker_info()
        if info is not None:
            files = files[info.id::info.num_workers]
        return files

    def _examples(self, epoch: int, rng: random.Random) -> Iterator[dict[str, Any]]:
        for path in self._my_files(epoch):
            for row in iter_segments(path, columns=["segment_id", "asset_id", "codes", "text"]):
                codes = row["codes"]
                if codes.shape[1] < self.frames:
                    continue
                start = rng.randrange(codes.shape[1] - self.frames + 1)
                crop = np.ascontiguousarray(codes[:, start:start + self.frames]).astype(np.int64)
                yield {"codes": torch.from_numpy(crop), "text": row["text"] or "", "asset_id": row["asset_id"],
                       "segment_id": row["segment_id"]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        epochs = itertools.count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            rng = random.Random(f"{self.seed}-{epoch}-{self.rank}-{worker}")
            buffer: list[dict[str, Any]] = []
            produced = False
            for example in self._examples(epoch, rng):
                produced = True
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(example)
                    continue
                index = rng.randrange(len(buffer))
                buffer[index], example = example, buffer[index]
                yield example
            rng.shuffle(buffer)
            yield from buffer
            if not produced:
                raise ValueError(f"no segment of at least {self.frames} frames in {len(self.files)} shard(s)")

    def batches(self, batch_size: int, start_step: int = 0) -> Iterator[dict[str, Any]]:
        """Collated batches from step ``start_step`` on (single process; used by the trainers)."""
        stream = itertools.islice(iter(self), start_step * batch_size, None)
        while True:
            chunk = list(itertools.islice(stream, batch_size))
            if len(chunk) < batch_size:
                return
            yield collate(chunk)


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"codes": torch.stack([example["codes"] for example in examples]),
            "text": [example["text"] for example in examples],
            "asset_id": [example["asset_id"] for example in examples]}
