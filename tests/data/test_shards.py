"""Shard round trip, manifest checks, `datasets` loading, and the streaming dataset's splits."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from soundtrail.data.dataset import ShardStream
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
    return [Segment(segment_id=f"{asset}:{i}", asset_id=asset, start_s=i * 2.0, duration_s=2.0,
                    codes=rng.integers(0, CODEC.codebook_size, size=(4, frames)).astype(np.int16),
                    text=f"track {asset} part {i}", tags=["demo", asset], license="CC0-1.0", rights_holder="Ann")
            for i in range(count)]


def _make_set(root: Path, shards: int = 4, per_shard: int = 5, frames: int = 40) -> tuple[Path, dict]:
    written = {}
    entries = []
    for index in range(shards):
        segments = _segments(f"a{index}", per_shard, frames, seed=index)
        entries.append(write_shard(root / f"part-{index:03d}.parquet", segments, CODEC))
        written.update({segment.segment_id: segment for segment in segments})
    write_manifest(root, entries, CODEC, {"segment_s": 2.0})
    return root, written


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
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir()), "no temporary files left behind"


def test_manifest_catches_changed_and_missing_shards(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path)
    paths = shard_paths(root)
    paths[0].write_bytes(paths[0].read_bytes()[:-10] + b"0123456789")
    paths[1].unlink()
    problems = verify_shards(root)
    assert any("part-000" in p and "sha256" in p for p in problems)
    assert any("part-001" in p and "missing" in p for p in problems)


def test_datasets_loads_shards_as_they_are(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    root, written = _make_set(tmp_path)
    loaded = datasets.load_dataset("parquet", data_files=[str(p) for p in shard_paths(root)], split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert len(loaded) == len(written)
    row = loaded[0]
    np.testing.assert_array_equal(np.asarray(row["codes"]), written[row["segment_id"]].codes)


def test_stream_splits_files_across_workers_without_overlap(tmp_path: Path, monkeypatch) -> None:
    root, written = _make_set(tmp_path, shards=4)
    stream = ShardStream(shard_paths(root), frames=16, seed=3, shuffle_buffer=4, epochs=1)
    ids = []
    for worker in range(2):  # what each of two DataLoader workers sees (torch's WorkerInfo, in-process)
        info = SimpleNamespace(id=worker, num_workers=2)
        monkeypatch.setattr("soundtrail.data.dataset.get_worker_info", lambda info=info: info)
        ids.append([example["segment_id"] for example in stream])
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == sorted(written), "every segment exactly once per epoch across workers"
    monkeypatch.undo()
    loader = DataLoader(stream, batch_size=None, num_workers=0)
    assert len(list(loader)) == len(written)
    ranks = [ShardStream(shard_paths(root), frames=16, seed=3, epochs=1, rank=r, world_size=2) for r in range(2)]
    assets = [{example["asset_id"] for example in rank} for rank in ranks]
    assert assets[0] and assets[1] and not assets[0] & assets[1]


def test_stream_resumes_at_a_step(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path)
    stream = ShardStream(shard_paths(root), frames=16, seed=7, shuffle_buffer=8)
    full = list(zip(range(6), stream.batches(batch_size=3), strict=False))
    resumed = list(zip(range(3), stream.batches(batch_size=3, start_step=3), strict=False))
    for (_, expected), (_, actual) in zip(full[3:], resumed, strict=True):
        assert torch.equal(expected["codes"], actual["codes"])
    assert full[0][1]["codes"].shape == (3, 4, 16)


def test_segments_shorter_than_a_crop_are_skipped(tmp_path: Path) -> None:
    root, _ = _make_set(tmp_path, frames=10)
    with pytest.raises(ValueError, match="no segment of at least 16 frames"):
        next(iter(ShardStream(shard_paths(root), frames=16, epochs=1)))
