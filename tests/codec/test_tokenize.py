"""Tokenize against the ledger: only accepted assets reach shards, re-runs skip, takedowns rewrite."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from soundtrail import checkpoint
from soundtrail.codec.codecs import KIND, codec_id_of
from soundtrail.codec.tokenize import GroupEncoder, finalize_set, plan_tokenize, rewrite_without
from soundtrail.data.location import Location
from soundtrail.data.shards import iter_segments, read_manifest, shard_paths, verify_shards
from soundtrail.models.codec import CodecConfig, NeuralCodec
from soundtrail.provenance.ledger import Ledger, ProjectionMismatch
from tests.audio_fixtures import melody, write

STATUSES = ("accepted", "quarantined", "duplicate", "blocked", "revoked", "disputed", "rejected")
TINY = CodecConfig(sample_rate=8000, channels=4, strides=(4, 4, 2), latent_dim=16, num_codebooks=2, codebook_size=16)


def tiny_codec(folder: Path, seed: int = 0) -> tuple[str, str]:
    torch.manual_seed(seed)
    checkpoint.save_weights(folder, NeuralCodec(TINY).eval(), KIND, TINY, step=0)
    return str(folder), codec_id_of(folder / checkpoint.WEIGHTS)


def tokenize(ledger: Ledger, shards: Location, codec_path: str, codec_id: str) -> dict:
    """The tokenize flow's steps in this process: one encoder for every group, each decoded during the last."""
    plan = plan_tokenize(ledger, shards, codec_path, codec_id, segment_s=1.0, assets_per_shard=2)
    entries = [e for e in (rewrite_without(plan.set_dir, s, set(plan.accepted)) for s in plan.stale) if e]
    with GroupEncoder(codec_path, plan.set_dir, 1.0, batch_size=4) as encoder:
        for group, then in itertools.zip_longest(plan.groups, plan.groups[1:]):
            result = encoder.encode(group, then)
            if result.entry:
                entries.append(result.entry)
    return finalize_set(ledger, plan, entries, 1.0, run_id="test") if (plan.keep or entries or plan.stale) else {}


def shard_assets(shards: Path) -> set[str]:
    found: set[str] = set()
    if not shards.exists():
        return found
    for set_dir in shards.iterdir():
        for path in shard_paths(Location.local(set_dir)):
            found |= {row["asset_id"] for row in iter_segments(path, columns=["asset_id"])}
    return found


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6),
       revoke=st.lists(st.integers(0, 5), max_size=2), withdrawn=st.sampled_from(("revoked", "disputed")))
def test_only_accepted_assets_ever_reach_a_shard(tmp_path_factory, statuses: list[str], revoke: list[int],
                                                 withdrawn: str) -> None:
    """Whatever the statuses, and after a takedown or a dispute withdraws accepted assets, shards hold exactly the
    accepted ones."""
    root = tmp_path_factory.mktemp("ws")
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    codec_path, codec_id = tiny_codec(root / "codec")
    for index, status in enumerate(statuses):
        path = write(root / f"a{index}.wav", melody(index, seconds=1.5), rate=8000)
        ledger.record("assets", f"a{index}", {"path": str(path), "status": status, "description": f"track {index}",
                                              "license": "CC0-1.0"}, "asset.test")
    tokenize(ledger, Location.local(root / "shards"), codec_path, codec_id)
    accepted = {row["id"] for row in ledger.rows("assets", status="accepted")}
    assert shard_assets(root / "shards") == accepted
    for index in revoke:
        if index < len(statuses):
            ledger.record("assets", f"a{index}", {"status": withdrawn}, f"asset.{withdrawn}")
    tokenize(ledger, Location.local(root / "shards"), codec_path, codec_id)
    accepted = {row["id"] for row in ledger.rows("assets", status="accepted")}
    assert shard_assets(root / "shards") == accepted
    if (root / "shards").exists():
        current = {row["id"] for row in ledger.rows("shards", status="current")}
        for set_dir in (root / "shards").iterdir():
            assert verify_shards(Location.local(set_dir)) == []
            assert {entry["sha256"] for entry in read_manifest(Location.local(set_dir))["shards"]} == current
    assert ledger.verify().ok


def test_rerun_skips_and_codes_match_a_direct_encode(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    codec_path, codec_id = tiny_codec(tmp_path / "codec")
    audio = melody(3, seconds=2.5, rate=8000)
    path = write(tmp_path / "a.wav", audio, rate=8000)
    ledger.record("assets", "a", {"path": str(path), "status": "accepted", "description": "calm piano",
                                  "tags": ["piano"], "license": "CC0-1.0", "rights_holder": "Ann"}, "asset.test")
    shards = Location.local(tmp_path / "shards")
    summary = tokenize(ledger, shards, codec_path, codec_id)
    assert summary["rows"] == 3  # 1 s segments of a 2.5 s file: 1 + 1 + 0.5
    head = ledger.head()
    plan = plan_tokenize(ledger, shards, codec_path, codec_id, segment_s=1.0, assets_per_shard=2)
    assert plan.nothing_to_do and ledger.head() == head
    shard = shard_paths(shards / summary["shard_set"])[0]
    rows = sorted(iter_segments(shard), key=lambda row: row["start_s"])
    assert [row["text"] for row in rows] == ["calm piano"] * 3 and rows[0]["tags"] == ["piano"]
    from soundtrail.codec.codecs import load_codec

    codec = load_codec(codec_path)
    stereo_mixed = (audio + audio * 0.9) / 2
    direct = codec.encode(torch.from_numpy(stereo_mixed[:8000].astype(np.float32))[None, None]).numpy()[0]
    np.testing.assert_array_equal(rows[0]["codes"], direct.astype(np.int16))
    metadata = pq.read_schema(shard.path).metadata
    assert codec_id.encode() in metadata[b"soundtrail"]


def test_a_shard_finished_before_a_kill_is_reused(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    codec_path, codec_id = tiny_codec(tmp_path / "codec")
    for index in range(4):
        path = write(tmp_path / f"a{index}.wav", melody(index, seconds=1.5), rate=8000)
        ledger.record("assets", f"a{index}", {"path": str(path), "status": "accepted"}, "asset.test")
    plan = plan_tokenize(ledger, Location.local(tmp_path / "shards"), codec_path, codec_id, segment_s=1.0,
                         assets_per_shard=2)
    with GroupEncoder(codec_path, plan.set_dir, 1.0, 4) as encoder:
        first = encoder.encode(plan.groups[0])  # then the process "dies"
    mtime = Path((plan.set_dir / first.entry["file"]).path).stat().st_mtime_ns
    assert read_manifest(plan.set_dir) is None, "no manifest until every shard is done"
    tokenize(ledger, Location.local(tmp_path / "shards"), codec_path, codec_id)
    assert Path((plan.set_dir / first.entry["file"]).path).stat().st_mtime_ns == mtime
    assert shard_assets(tmp_path / "shards") == {f"a{i}" for i in range(4)}


def test_an_asset_relabelled_accepted_in_the_table_alone_is_refused(ledger_url: str, tmp_path: Path) -> None:
    """The chain says quarantined (NC); an edit of the assets table says accepted: the asset never reaches a shard."""
    ledger = Ledger(ledger_url)
    codec_path, codec_id = tiny_codec(tmp_path / "codec")
    for index, (status, spdx) in enumerate([("accepted", "CC0-1.0"), ("quarantined", "CC-BY-NC-4.0")]):
        path = write(tmp_path / f"a{index}.wav", melody(index, seconds=1.5), rate=8000)
        ledger.record("assets", f"a{index}", {"path": str(path), "status": status, "license": spdx}, "asset.test")
    with ledger.engine.connect() as connection:
        connection.execute(text("UPDATE assets SET status = 'accepted', reason = NULL WHERE id = 'a1'"))
        connection.commit()
    with pytest.raises(ProjectionMismatch, match="assets row 'a1' column 'status' is 'accepted' but the chain says "
                                                 "'quarantined': refusing to use it"):
        tokenize(ledger, Location.local(tmp_path / "shards"), codec_path, codec_id)
    assert shard_assets(tmp_path / "shards") == set()
    with ledger.engine.connect() as connection:  # the operator puts the row back: tokenize goes on
        connection.execute(text("UPDATE assets SET status = 'quarantined' WHERE id = 'a1'"))
        connection.commit()
    tokenize(ledger, Location.local(tmp_path / "shards"), codec_path, codec_id)
    assert shard_assets(tmp_path / "shards") == {"a0"}
    ledger.close()
