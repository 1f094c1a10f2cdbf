"""Shard round trip, manifest checks, `datasets` loading, and the streaming dataset's splits."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from soundtrail.data import dataset
from soundtrail.data.dataset import ShardStream
from soundtrail.data.location import Location
from soundtrail.data.shards import (
    CodecInfo,
    Segment,
    iter_segments,
    read_codec_info,
    shard_paths,
    verify_shards,
    write_manifest,
    write_shard,
)

CODEC = CodecInfo(codec_id="c0ffee", sample_rate=16000, frame_rate=50.0, num_codebooks=4, codebook_size=256)


def _segments(asset: str, count: int, frames: int, seed: int) -> list[Segment]:
    rng = np.random.default_rng(seed)
    return [Segment(segment_id=f"{asset}:{i}", asset_id=asset, start_s=i * 2.0, duration_s=frames / CODEC.frame_rate,
                    codes=rng.integers(0, CODEC.codebook_size, size=(4, frames)).astype(np.int16),
                    text=f"track {asset} part {i}", tags=["demo", asset], license="CC0-1.0", rights_holder="Ann")
            for i in range(count)]


def write_set(root: Location, shards: int = 4, per_shard: int = 5, frames: int = 40) -> dict[str, Segment]:
    """A shard set of ``shards`` assets in ``root``: its segments by id."""
    written = {}
    entries = []
    for index in range(shards):
        segments = _segments(f"a{index}", per_shard, frames, seed=index)
        entries.append(write_shard(root / f"part-{index:03d}.parquet", segments, CODEC))
        written.update({segment.segment_id: segment for segment in segments})
    write_manifest(root, entries, CODEC, {"segment_s": 2.0})
    return written


def _make_set(folder: Path, shards: int = 4, per_shard: int = 5, frames: int = 40) -> tuple[Location, dict]:
    root = Location.local(folder)
    return root, write_set(root, shards, per_shard, frames)


def test_codes_read_back_equal_codes_written(tmp_path: Path) -> None:
    root, written = _make_set(tmp_path)
    assert verify_shards(root) == []
    assert read_codec_info(shard_paths(root)[0]) == CODEC
    seen = 0
    for path in shard_paths(root):
        for row in iter_segments(path):
            original = written[row["segment_id"]]
            np.testing.assert_array_equal(row["codes"], original.codes)
            assert row["codes"].dtype == np.int16
            assert row["text"] == original.text and row["tags"] == original.tags
            seen += 1
    assert seen == len(written)
    assert not any(p.name.startswith(".tmp-") for p in Path(root.path).iterdir()), "no temporary files left behind"


def test_manifest_catches_changed_and_missing_shards(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path)
    paths = shard_paths(root)
    paths[0].write_bytes(paths[0].read_bytes()[:-10] + b"0123456789")
    paths[1].delete()
    problems = verify_shards(root)
    assert any("part-000" in p and "sha256" in p for p in problems)
    assert any("part-001" in p and "missing" in p for p in problems)


def test_datasets_loads_shards_as_they_are(tmp_path: Path) -> None:
    import datasets
    root, written = _make_set(tmp_path)
    loaded = datasets.load_dataset("parquet", data_files=[p.path for p in shard_paths(root)], split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert len(loaded) == len(written)
    row = loaded[0]
    np.testing.assert_array_equal(np.asarray(row["codes"]), written[row["segment_id"]].codes)


def _ids(stream: ShardStream, steps: range) -> list[str]:
    return [segment for step in steps for segment in stream.batch(step)["segment_id"]]


def test_ranks_read_disjoint_spans_that_cover_an_epoch(tmp_path: Path) -> None:
    """4 shards of 5 segments, 2 ranks: each rank's first 10 examples are half the corpus, together all of it."""
    root, written = _make_set(tmp_path, shards=4)
    ranks = [ShardStream(shard_paths(root), frames=16, batch_size=1, seed=3, shuffle_block=4, rank=rank,
                         world_size=2) for rank in range(2)]
    seen = [_ids(stream, range(10)) for stream in ranks]
    assert len(set(seen[0])) == len(set(seen[1])) == 10
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(written), "every segment exactly once per epoch across the ranks"
    assets = [{segment.split(":")[0] for segment in ids} for ids in seen]
    assert all(len(found) == 2 for found in assets), "each rank reads two whole shards"
    assert _ids(ranks[0], range(10, 20)) != seen[0], "the next epoch reads in another order"


def test_more_ranks_and_loader_workers_than_shards_still_stream(tmp_path: Path) -> None:
    """2 shards, 4 ranks, 2 DataLoader workers each: every rank gets its share (split at the segment level), and
    the batches do not depend on how many DataLoader workers read them."""
    root, written = _make_set(tmp_path, shards=2, per_shard=6)
    ranks = [ShardStream(shard_paths(root), frames=16, batch_size=3, seed=1, rank=rank, world_size=4)
             for rank in range(4)]
    spans = [set(_ids(stream, range(1))) for stream in ranks]
    assert all(len(span) == 3 for span in spans) and len(set().union(*spans)) == 12
    for stream in ranks[:2]:
        inline = [stream.batch(step) for step in range(4, 8)]
        loaded = list(itertools.islice(stream.batches(start_step=4, workers=2), 4))
        for expected, actual in zip(inline, loaded, strict=True):
            assert torch.equal(expected["codes"], actual["codes"]) and expected["text"] == actual["text"]


def test_fewer_segments_than_ranks_wrap_round(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path, shards=1, per_shard=2)
    batches = [ShardStream(shard_paths(root), frames=16, batch_size=2, rank=rank, world_size=3).batch(0)
               for rank in range(3)]
    assert all(batch["codes"].shape == (2, 4, 16) for batch in batches)


def test_a_resumed_stream_reads_from_its_step_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 200 of a fresh stream equals step 200 of one that read steps 0..199, and reading it decodes one
    block's shards, not the 600 examples before it."""
    root, _ = _make_set(tmp_path, shards=6)
    stream = ShardStream(shard_paths(root), frames=16, batch_size=3, seed=7, shuffle_block=8)
    through = list(itertools.islice(stream.batches(), 203))[200:]
    decoded: list[str] = []
    read_columns = dataset.read_columns

    def counting(path: Location, columns: list[str]) -> pa.Table:
        if "codes" in columns:
            decoded.append(path.name)
        return read_columns(path, columns)

    monkeypatch.setattr(dataset, "read_columns", counting)
    resumed = ShardStream(shard_paths(root), frames=16, batch_size=3, seed=7, shuffle_block=8)
    for expected, actual in zip(through, itertools.islice(resumed.batches(start_step=200), 3), strict=True):
        assert torch.equal(expected["codes"], actual["codes"])
        assert expected["segment_id"] == actual["segment_id"]
    assert 1 <= len(decoded) <= 3, decoded
    assert through[0]["codes"].shape == (3, 4, 16)


def test_shards_read_names_the_shards_a_rank_read(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path, shards=4)
    paths = shard_paths(root)
    for rank in range(2):
        stream = ShardStream(paths, frames=16, batch_size=2, seed=5, rank=rank, world_size=2)
        assets = {asset for step in range(3) for asset in stream.batch(step)["asset_id"]}
        read = stream.shards_read(3)
        assert {f"a{paths.index(path)}" for path in read} == assets
    whole = ShardStream(paths, frames=16, batch_size=2, seed=5)
    assert whole.shards_read(100) == paths


def test_segments_shorter_than_a_crop_are_skipped(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path, frames=10)
    with pytest.raises(ValueError, match="no segment of at least 16 frames"):
        ShardStream(shard_paths(root), frames=16, batch_size=2)
    mixed = Location.local(tmp_path / "mixed")
    entries = [write_shard(mixed / "part-000.parquet", _segments("short", 3, 10, 0) + _segments("long", 2, 40, 1),
                           CODEC)]
    write_manifest(mixed, entries, CODEC, {"segment_s": 2.0})
    stream = ShardStream(shard_paths(mixed), frames=16, batch_size=4)
    assert {asset for step in range(5) for asset in stream.batch(step)["asset_id"]} == {"long"}
