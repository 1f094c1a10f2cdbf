"""Tokenize on a pool of Ray actors: the codec loaded once per actor, the same shards whatever the pool,
an undecodable asset skipped with its reason while the rest of its group is written, and the flow's own
guarantees (progress, skipped reasons, re-runs, takedowns, the ledger) on top of it."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import pytest

from soundtrail.codec.tokenize import GroupEncoder, TokenizePlan, plan_tokenize
from soundtrail.config import TokenizeSettings
from soundtrail.data.location import Location
from soundtrail.data.shards import iter_segments, read_manifest, shard_paths, verify_shards
from soundtrail.flows.progress import reporting
from soundtrail.flows.tokenize import encode_on_pool
from soundtrail.provenance.ledger import Ledger
from tests.audio_fixtures import melody, write
from tests.codec.test_tokenize import tiny_codec
from tests.flows.codec_loads import ENV, count_codec_loads, loads_by_process

pytestmark = pytest.mark.slow

SECONDS = (1.5, 2.5, 0.7, 3.2, 1.1)  # uneven lengths: short last segments, one asset shorter than a segment

# The setup hook lives in this repository's tests package, which workers import only with the checkout on their
# path (`make test` runs pytest from the checkout without PYTHONPATH).
WORKER_PATH = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="module")
def codec_loads(tmp_path_factory) -> Path:
    """A local Ray of 2 CPUs whose workers count their codec loads into the folder yielded (emptied per test)."""
    import ray

    folder = tmp_path_factory.mktemp("codec-loads")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {ENV: str(folder), "PYTHONPATH": WORKER_PATH},
                          "worker_process_setup_hook": count_codec_loads})
    try:
        yield folder
    finally:
        ray.shutdown()


@pytest.fixture
def loads(codec_loads: Path) -> Path:
    for path in codec_loads.iterdir():
        path.unlink()
    return codec_loads


def corpus(root: Path, seconds: tuple[float, ...] = SECONDS, broken: bool = False) -> tuple[Ledger, str, str]:
    """Accepted assets a0.. (8 kHz WAV) in a fresh ledger, plus a tiny codec; ``broken`` adds an undecodable one."""
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    codec_path, codec_id = tiny_codec(root / "codec")
    for index, length in enumerate(seconds):
        path = write(root / f"a{index}.wav", melody(index, seconds=length, rate=8000), rate=8000)
        ledger.record("assets", f"a{index}", {"path": str(path), "status": "accepted", "license": "CC0-1.0",
                                              "description": f"track {index}", "tags": ["test"]}, "asset.test")
    if broken:
        path = root / "b.wav"
        path.write_bytes(b"RIFF....WAVEjunk")
        ledger.record("assets", "b", {"path": str(path), "status": "accepted", "license": "CC0-1.0"}, "asset.test")
    return ledger, codec_path, codec_id


def plan_for(ledger: Ledger, shards: Path, codec_path: str, codec_id: str, assets_per_shard: int) -> TokenizePlan:
    return plan_tokenize(ledger, Location.local(shards), codec_path, codec_id, segment_s=1.0,
                         assets_per_shard=assets_per_shard)


def pool_settings(workers: int, assets_per_shard: int) -> TokenizeSettings:
    return TokenizeSettings(segment_s=1.0, assets_per_shard=assets_per_shard, batch_size=4, workers=workers)


def shard_contents(set_dir: Location) -> dict[str, list[dict]]:
    """Every shard written in ``set_dir`` (no manifest yet: that is the flow's last step)."""
    return {name: list(iter_segments(set_dir / name)) for name in set_dir.files()
            if fnmatch.fnmatch(name, "part-*.parquet")}


def test_pools_of_one_and_two_actors_load_the_codec_once_each_and_write_the_reference_bytes(
        loads: Path, tmp_path: Path) -> None:
    """The reference is the path before the pool: a codec loaded for each group, decoded then encoded."""
    ledger, codec_path, codec_id = corpus(tmp_path)
    # Two groups: one actor encodes the second after decoding it during the first; two actors take one each.
    reference = plan_for(ledger, tmp_path / "reference", codec_path, codec_id, assets_per_shard=3)
    assert len(reference.groups) == 2
    for group in reference.groups:
        with GroupEncoder(codec_path, reference.set_dir, 1.0, batch_size=4) as encoder:
            encoder.encode(group)
    expected = shard_contents(reference.set_dir)
    for workers in (1, 2):
        plan = plan_for(ledger, tmp_path / f"pool-{workers}", codec_path, codec_id, assets_per_shard=3)
        entries = {result.entry["file"]: result.entry for _, result in encode_on_pool(plan, pool_settings(workers, 3))}
        assert set(entries) == set(expected), "the same groups make the same shard names"
        for name, rows in shard_contents(plan.set_dir).items():
            assert (plan.set_dir / name).read_bytes() == (reference.set_dir / name).read_bytes()
            assert [row["segment_id"] for row in rows] == [row["segment_id"] for row in expected[name]]
            for row, want in zip(rows, expected[name], strict=True):
                np.testing.assert_array_equal(row["codes"], want["codes"])
        loaded = loads_by_process(loads)
        assert sorted(loaded.values()) == [1] * workers, f"{workers} actor(s), 2 groups: one load per actor"
        for path in loads.iterdir():
            path.unlink()


def test_an_undecodable_asset_is_skipped_with_its_reason_and_the_rest_of_its_group_is_written(
        loads: Path, tmp_path: Path) -> None:
    ledger, codec_path, codec_id = corpus(tmp_path, seconds=(1.5, 2.5, 2.0), broken=True)
    plan = plan_for(ledger, tmp_path / "shards", codec_path, codec_id, assets_per_shard=2)
    assert [[asset.id for asset in group] for group in plan.groups] == [["a0", "a1"], ["a2", "b"]]
    results = dict((group[0].id, result) for group, result in encode_on_pool(plan, pool_settings(1, 2)))
    # One actor: ["a2", "b"] was the group it decoded while encoding the first.
    assert results["a0"].skipped == [] and results["a0"].entry["asset_ids"] == ["a0", "a1"]
    broken = results["a2"]
    assert broken.entry["asset_ids"] == ["a2"] and broken.entry["rows"] == 2
    [skip] = broken.skipped
    assert skip["asset_id"] == "b" and skip["segment"] == "*" and skip["reason"].startswith("cannot decode: ")
    rows = list(iter_segments(plan.set_dir / broken.entry["file"]))
    assert [row["segment_id"] for row in rows] == ["a2:0", "a2:1"]


class Recorder:
    """A reporter that keeps what the flow reported, as the CLI's progress bars would show it."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        self.totals[stage], self.done[stage] = total, 0

    def advance(self, stage: str, amount: int = 1) -> None:
        self.done[stage] += amount

    def note(self, stage: str, text: str) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


def test_tokenize_flow_on_the_pool_reports_skips_reuses_its_shards_and_rewrites_after_a_takedown(
        tmp_path: Path, prefect_server: str) -> None:
    from soundtrail.flows.tokenize import tokenize_flow

    ledger, codec_path, _ = corpus(tmp_path, broken=True)
    (tmp_path / "soundtrail.toml").write_text(
        f'[codec]\ncheckpoint = "{codec_path}"\n[tokenize]\nsegment_s = 1.0\nassets_per_shard = 2\nworkers = 2\n')
    with reporting(Recorder()) as progress:
        summary = tokenize_flow(str(tmp_path))
    assert progress.totals == progress.done == {"tokenize": len(SECONDS) + 1}
    assert (summary["shards"], summary["new_shards"], summary["superseded"]) == (3, 3, 0)
    too_short = {(f"a{index}", str(int(length))) for index, length in enumerate(SECONDS) if 0 < length % 1 < 0.5}
    reasons = {(skip["asset_id"], skip["segment"]): skip["reason"] for skip in summary["skipped"]}
    assert set(reasons) == too_short | {("b", "*")} and reasons["b", "*"].startswith("cannot decode: ")
    assert all("short" in reasons[key] for key in too_short), reasons
    set_dir = Location.local(tmp_path / "shards" / summary["shard_set"])
    assert verify_shards(set_dir) == []
    current = {row["id"] for row in ledger.rows("shards", status="current")}
    assert {entry["sha256"] for entry in read_manifest(set_dir)["shards"]} == current
    head = ledger.head()

    again = tokenize_flow(str(tmp_path))
    assert again["new_shards"] == 0 and again["rows"] == summary["rows"] and ledger.head() == head

    ledger.record("assets", "a0", {"status": "revoked"}, "asset.revoked")
    after = tokenize_flow(str(tmp_path))
    assert (after["shards"], after["superseded"]) == (3, 1)
    assert "a0" not in {row["asset_id"] for path in shard_paths(set_dir) for row in iter_segments(path)}
    assert {entry["sha256"] for entry in read_manifest(set_dir)["shards"]} == {
        row["id"] for row in ledger.rows("shards", status="current")}
    assert ledger.verify().ok
