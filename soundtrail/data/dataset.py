"""Token shards into torch: batches of random crops, each batch a pure function of (seed, step, rank, world size).

Which segments a rank reads, epoch after epoch of its stream::

    epoch e:  the shards in an order shuffled by (seed, e); in each, its usable segments (at least ``frames``
              long, by their ``duration_s``) in file order; all of them one after another: N segments
    rank r:   the r-th of world_size equal spans of those N (N // world_size each; the N % world_size left over
              sit this epoch out, and the next epoch's order changes which); fewer segments than ranks: the
              spans wrap round and ranks share segments
    order:    the span in blocks of ``shuffle_block`` segments, each block's order shuffled by (seed, e, r, block)
    crop:     a start drawn by (seed, e, r, position in the span)
    step s:   positions s * B .. (s + 1) * B - 1 of the rank's stream (B = batch_size), epochs end to end

So the ranks read disjoint runs of shards (split at the segment level: a shard at a span's edge is read by
both neighbours, and a corpus with fewer shards than ranks still gives every rank its share), nothing is read
twice in an epoch, and a run resumed at step s computes where step s starts and reads from there: a resume costs
one block, not the examples before it. Which shards a rank read over a run is a function of the step count
(:meth:`ShardStream.shards_read`), which is what the ledger records.

:class:`StepBatches` is the base of every such dataset (the codec's audio crops too): ``batch(step)`` is random
access, iteration yields the steps from ``start_step`` on, and under a DataLoader each worker computes every
n-th step (in-order fetching puts them back in step order), so the data never depends on how many DataLoader
workers read it. The price: the workers of one rank may each read the same shard, which for token data (a few
hundred bytes per second of audio) costs far less than keeping the data a function of the step.
"""

from __future__ import annotations

import copy
import itertools
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from soundtrail.data.location import Location
from soundtrail.data.shards import read_codec_info, read_columns

Value = TypeVar("Value")
COLUMNS = ["segment_id", "asset_id", "codes", "text"]


class Recent(Generic[Value]):
    """The last ``size`` values computed, by key: bounded memory for decoded shards and shuffled blocks."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.values: OrderedDict[Hashable, Value] = OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        if key in self.values:
            self.values.move_to_end(key)
            return self.values[key]
        value = self.values[key] = compute()
        if len(self.values) > self.size:
            self.values.popitem(last=False)
        return value


class StepBatches(IterableDataset):
    """Batches addressed by their step: ``batch(step)`` is the same whenever and wherever it is computed."""

    start_step: int = 0

    @abstractmethod
    def batch(self, step: int) -> Any:
        """The batch of optimizer step ``step``, a function of the step alone."""

    def from_step(self, start_step: int) -> StepBatches:
        """This dataset iterating from ``start_step`` on (a copy)."""
        other = copy.copy(self)
        other.start_step = start_step
        return other

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in itertools.count(self.start_step + worker, workers):
            yield self.batch(step)

    def batches(self, start_step: int = 0, workers: int = 0) -> Iterator[Any]:
        """The batches from ``start_step`` on: computed here, or by ``workers`` DataLoader processes."""
        if workers == 0:
            return (self.batch(step) for step in itertools.count(start_step))
        return iter(DataLoader(self.from_step(start_step), batch_size=None, num_workers=workers))


class ShardStream(StepBatches):
    """Batches ``{"codes": LongTensor [B, K, frames], "text": [str], "asset_id": [str]}`` of one rank."""

    def __init__(self, files: list[Location], frames: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle_block: int = 256, cached_shards: int = 4) -> None:
        super().__init__()
        if not files:
            raise ValueError("no shards to read: run `soundtrail tokenize` first")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size}")
        self.files = list(files)
        self.frames, self.batch_size, self.seed = frames, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle_block = max(1, shuffle_block)
        frame_rate = read_codec_info(self.files[0]).frame_rate
        self.usable = [_usable_rows(path, frames, frame_rate) for path in self.files]
        self.total = sum(len(rows) for rows in self.usable)
        if not self.total:
            raise ValueError(f"no segment of at least {frames} frames in {len(self.files)} shard(s)")
        self.span = max(1, self.total // world_size)
        self._epochs: Recent[tuple[np.ndarray, np.ndarray]] = Recent(2)
        self._blocks: Recent[np.ndarray] = Recent(4)
        self._shards: Recent[pa.Table] = Recent(cached_shards)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with empty caches
        state = dict(self.__dict__)
        state.update(_epochs=Recent(2), _blocks=Recent(4), _shards=Recent(self._shards.size))
        return state

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard index, row) of every usable segment, in the order of ``epoch``."""
        def compute() -> tuple[np.ndarray, np.ndarray]:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
            shards = np.concatenate([np.full(len(self.usable[index]), index) for index in order])
            rows = np.concatenate([self.usable[index] for index in order])
            return shards, rows

        return self._epochs.get(epoch, compute)

    def _block_order(self, epoch: int, block: int) -> np.ndarray:
        start = block * self.shuffle_block
        size = min(self.shuffle_block, self.span - start)
        return self._blocks.get((epoch, block), lambda: np.random.default_rng(
            [self.seed, epoch, self.rank, block]).permutation(size))

    def _indices(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Indices into ``_epoch(epoch)`` of the rank's span positions ``positions``."""
        blocks = positions // self.shuffle_block
        within = np.empty_like(positions)
        for block in np.unique(blocks):
            chosen = blocks == block
            within[chosen] = block * self.shuffle_block + self._block_order(epoch, int(block))[
                positions[chosen] - block * self.shuffle_block]
        return (self.rank * self.span + within) % self.total

    def _table(self, shard: int) -> pa.Table:
        return self._shards.get(shard, lambda: read_columns(self.files[shard], COLUMNS).combine_chunks())

    def _example(self, position: int) -> dict[str, Any]:
        epoch, offset = divmod(position, self.span)
        shards, rows = self._epoch(epoch)
        index = int(self._indices(epoch, np.array([offset]))[0])
        shard, row = int(shards[index]), int(rows[index])
        table = self._table(shard)
        nested = table.column("codes").chunk(0)[row].values
        codes = nested.flatten().to_numpy(zero_copy_only=False).reshape(len(nested), -1)
        if codes.shape[1] < self.frames:
            raise ValueError(f"{self.files[shard].name} row {row} holds {codes.shape[1]} frames, fewer than its "
                             f"duration_s promises ({self.frames} wanted)")
        start = int(np.random.default_rng([self.seed, epoch, self.rank, offset]).integers(
            0, codes.shape[1] - self.frames + 1))
        crop = np.ascontiguousarray(codes[:, start:start + self.frames], dtype=np.int64)
        return {"codes": torch.from_numpy(crop), "text": table.column("text")[row].as_py() or "",
                "asset_id": table.column("asset_id")[row].as_py(),
                "segment_id": table.column("segment_id")[row].as_py()}

    def batch(self, step: int) -> dict[str, Any]:
        first = step * self.batch_size
        return collate([self._example(position) for position in range(first, first + self.batch_size)])

    def shards_read(self, steps: int) -> list[Location]:
        """The shards this rank reads in steps 0 .. ``steps`` - 1, in file order."""
        seen: set[int] = set()
        full_epochs, remainder = divmod(steps * self.batch_size, self.span)
        for epoch in range(full_epochs + 1):
            count = self.span if epoch < full_epochs else remainder
            if not count or len(seen) == len(self.files):
                break
            shards, _ = self._epoch(epoch)
            seen.update(shards[self._indices(epoch, np.arange(count))].tolist())
        return [self.files[index] for index in sorted(seen)]


def _usable_rows(path: Location, frames: int, frame_rate: float) -> np.ndarray:
    """Rows holding at least ``frames`` frames: tokenize writes ceil(duration_s * frame_rate) of them, so the
    duration column (a few bytes a row, read without the codes) says which, rounding down to be safe."""
    durations = read_columns(path, ["duration_s"]).column("duration_s").to_numpy()
    return np.flatnonzero(np.floor(durations * frame_rate + 1e-6) >= frames)


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"codes": torch.stack([example["codes"] for example in examples]),
            "text": [example["text"] for example in examples],
            "asset_id": [example["asset_id"] for example in examples],
            "segment_id": [example["segment_id"] for example in examples]}
