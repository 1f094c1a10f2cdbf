"""Where a generator's training starts: every row of the decision table in soundtrail/train/start.py, on a ledger
built record by record (the trained versions are in tests/train/test_continue.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from torch import nn

from soundtrail import checkpoint
from soundtrail.config import Settings, TrainSettings
from soundtrail.data.shards import CodecInfo
from soundtrail.provenance.ledger import Ledger, ProjectionMismatch
from soundtrail.provenance.records import BaseModelRecord
from soundtrail.train.generator import TrainingData
from soundtrail.train.start import starting_point
from soundtrail.workspace import Workspace

ENCODER = "learned-words:test"
SHARDS = {"s0": ["a0"], "s1": ["a1"], "s2": ["a2"], "s3": ["a3"], "s9": ["a1"]}
# id: (kind, codec, shards, created_at, parent)
MODELS = {
    "oldest": ("ar", "c1", ["s0"], "2025-01-01", None),
    "prev": ("ar", "c1", ["s1", "s2"], "2025-01-02", None),
    "other-codec": ("ar", "c2", ["s9"], "2025-01-03", None),
    "sibling": ("ar", "c1", ["s1", "s2", "s3"], "2025-01-04", "prev"),  # on the current shards: never a parent
    "dit": ("diffusion", "c1", ["s1"], "2025-01-05", None),
}
DATA = TrainingData("c1", "/ck/c1", CodecInfo("c1", 8000, 250.0, 2, 16), [], ["s1", "s2", "s3"])


def make_workspace(root: Path, init: str = "continue") -> Workspace:
    workspace = Workspace(root, Settings(train=TrainSettings(init=init)))
    with Ledger(workspace.ledger_url) as ledger, ledger.writer() as writer:
        for index in range(4):
            writer.record("assets", f"a{index}", {"status": "accepted", "license": "CC0-1.0"}, "asset.accepted")
        for shard_id, assets in SHARDS.items():
            writer.record("shards", shard_id, {"asset_ids": assets, "status": "current"}, "shard.written")
        for model_id, (kind, codec_id, shards, created_at, parent) in MODELS.items():
            path = root / "checkpoints" / model_id
            checkpoint.save_weights(path, nn.Linear(1, 1), kind, {})
            writer.record("models", model_id, {"kind": kind, "codec_id": codec_id, "shards": shards,
                                               "created_at": created_at, "parent": parent, "path": str(path),
                                               "text_encoder": ENCODER}, "model.trained")
    return workspace


def test_a_family_continues_from_its_newest_model_of_other_shards_on_the_shards_codec(tmp_path: Path) -> None:
    start = starting_point(make_workspace(tmp_path), "ar", DATA, ENCODER, None)
    assert start.parent is not None and start.parent.id == "prev" and start.predecessor is None
    assert start.init == str(tmp_path / "checkpoints" / "prev")
    assert start.reason == "continued from ar model prev, trained on other shards"


@pytest.mark.parametrize(("change", "reason"), [
    ("policy", '[train] init = "scratch"'),
    ("encoder", "it reads captions with text encoder learned-words:test, this run with minilm-l6-v2:x"),
    ("base", "it descends from base model none, this run from ba5e"),
    ("preset", "it is of the tiny preset, this run of the small preset ([model])"),
    ("checkpoint", "its checkpoint is missing"),
    ("revoked", "its weights learned from assets no longer accepted: a2 (revoked: takedown: rights holder)"),
    ("revoked-before-parent", "its weights learned from assets no longer accepted: a0 (disputed)"),
    ("marked", "takedown t1 marked it"),  # e.g. through its codec: the model's own assets are all accepted
])
def test_a_previous_model_that_cannot_be_continued_is_the_predecessor(tmp_path: Path, change: str,
                                                                      reason: str) -> None:
    workspace = make_workspace(tmp_path, "scratch" if change == "policy" else "continue")
    encoder, base, preset = ENCODER, None, "tiny"
    with Ledger(workspace.ledger_url) as ledger:
        if change == "encoder":
            encoder = "minilm-l6-v2:x"
        elif change == "base":
            base = BaseModelRecord("ba5e", "tiny", "/base", "MusicgenForCausalLM", "CC0-1.0", "config", "stock",
                                   "accepted", "allow")
        elif change == "preset":
            ledger.record("models", "prev", {"training": {"preset": "tiny"}}, "model.trained")
            preset = "small"
        elif change == "checkpoint":
            (tmp_path / "checkpoints" / "prev" / checkpoint.CONFIG).unlink()
        elif change == "revoked":
            ledger.record("assets", "a2", {"status": "revoked", "reason": "takedown: rights holder"}, "asset.revoked")
        elif change == "revoked-before-parent":  # prev continued from oldest, which saw a0
            ledger.record("models", "prev", {"parent": "oldest"}, "model.trained")
            ledger.record("assets", "a0", {"status": "disputed"}, "asset.disputed")
        elif change == "marked":
            ledger.record("models", "prev", {"status": "affected-by-takedown", "takedowns": ["t1"]},
                          "model.affected-by-takedown")
    start = starting_point(workspace, "ar", DATA, encoder, base, preset)
    assert start.parent is None and start.init is None and start.predecessor == "prev"
    fresh = "from base model tiny" if base is not None else "from scratch"
    assert start.reason.startswith(f"{fresh}, not continued from ar model prev: {reason}")


def test_a_model_on_another_codec_is_only_ever_a_predecessor(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    data = TrainingData("c2", "/ck/c2", DATA.codec, [], ["s3"])
    start = starting_point(workspace, "ar", data, ENCODER, None)
    assert (start.parent.id, start.predecessor) == ("other-codec", None), "the newest model on the shards' codec"
    start = starting_point(workspace, "ar", TrainingData("c3", "/ck/c3", DATA.codec, [], ["s3"]), ENCODER, None)
    assert start.parent is None and start.predecessor == "sibling"
    assert start.reason.endswith("it was trained on codec c1's tokens, the shards hold codec c3's")


def test_a_first_model_starts_afresh_with_no_predecessor(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    only_current = TrainingData("c1", "/ck/c1", DATA.codec, [], ["s1"])  # dit's own shards: its own earlier run
    start = starting_point(workspace, "diffusion", only_current, ENCODER, None)
    assert (start.parent, start.predecessor, start.reason) == (None, None, "from scratch: no earlier diffusion model")


def test_an_asset_relabelled_accepted_behind_the_chain_stops_training(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("assets", "a1", {"status": "revoked", "reason": "takedown: request"}, "asset.revoked")
        with ledger.engine.begin() as connection:
            connection.execute(text("UPDATE assets SET status = 'accepted' WHERE id = 'a1'"))
    with pytest.raises(ProjectionMismatch, match="assets row 'a1' column 'status'"):
        starting_point(workspace, "ar", DATA, ENCODER, None)
