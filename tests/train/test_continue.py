"""A family trained again on new shards continues from its previous model, never from one carrying revoked work.

Trains tiny AR models for real: the continued model starts where its parent ended (its first losses are those of
a trained model, not of random weights), the parent is recorded and audited, and after a takedown the next model
starts from scratch and names the model it replaces.
"""

from __future__ import annotations

from pathlib import Path

from soundtrail.config import Settings, TokenizeSettings, TrainSettings
from soundtrail.data.storage import Storage
from soundtrail.provenance.audit import model_audit
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import asset_descendants, model_sources, training_license_summary
from soundtrail.provenance.takedown import revoke
from soundtrail.train.stage import train_generator
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_tokenize import tokenize
from tests.train.test_stage import tokenize_with_tiny_codec, workspace_with_assets

SETTINGS = Settings(tokenize=TokenizeSettings(segment_s=1.0),
                    train=TrainSettings(ar_steps=20, batch_size=4, crop_seconds=0.25, text_encoder="learned"))
CONTINUED_HEAD_START = 0.3  # the continued model's first losses sit at least this far below a fresh model's


def add_asset(workspace: Workspace, index: int) -> None:
    path = write(workspace.root / "corpus" / f"a{index}.wav", melody(index, seconds=2.0, rate=8000), rate=8000)
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("assets", f"asset{index}", {"path": str(path), "status": "accepted", "license": "CC0-1.0",
                                                  "description": f"melody {index}"}, "asset.test")


def test_new_shards_continue_the_previous_model_and_a_takedown_starts_afresh(tmp_path: Path) -> None:
    workspace = workspace_with_assets(tmp_path / "ws", SETTINGS)
    codec_path, codec_id = tokenize_with_tiny_codec(workspace, tmp_path / "codec")
    first = train_generator(workspace, "ar").model
    assert (first.parent, first.predecessor, first.init_reason) == (None, None, "from scratch: no earlier ar model")

    add_asset(workspace, 3)
    with Ledger(workspace.ledger_url) as ledger:
        tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)
    continued = train_generator(workspace, "ar").model
    assert continued.parent == first.id and continued.predecessor is None
    assert continued.init_reason == f"continued from ar model {first.id}, trained on other shards"
    assert set(continued.shards) > set(first.shards)

    scratch_workspace = Workspace(workspace.root, SETTINGS.model_copy(
        update={"train": SETTINGS.train.model_copy(update={"init": "scratch"})}))
    scratch = train_generator(scratch_workspace, "ar").model
    assert scratch.parent is None and scratch.predecessor == first.id
    assert scratch.init_reason == f'from scratch, not continued from ar model {first.id}: [train] init = "scratch"'
    assert scratch.path != continued.path and scratch.id != continued.id
    head_start = scratch.metrics["initial_loss"] - continued.metrics["initial_loss"]
    print(f"initial loss: from scratch {scratch.metrics['initial_loss']:.3f}, continued "
          f"{continued.metrics['initial_loss']:.3f} (parent ended at {first.metrics['final_loss']:.3f})")
    assert head_start > CONTINUED_HEAD_START, "the continued run starts from its parent's trained weights"
    assert continued.metrics["initial_loss"] < first.metrics["initial_loss"] - CONTINUED_HEAD_START

    with Ledger(workspace.ledger_url) as ledger:
        head = ledger.head()
        assert train_generator(workspace, "ar").model == continued, "a re-run finds the continued model"
        assert ledger.head() == head
        audit = model_audit(ledger, continued.id)
        assert audit["model"]["parent"] == first.id and audit["model"]["init_reason"] == continued.init_reason
        assert training_license_summary(ledger, continued.id)["parents"] == [first.id]
        via = {row["id"]: row["via"] for row in model_sources(ledger, continued.id)}
        assert via["asset0"] == ["parent", "shards"] and via["asset3"] == ["shards"]
        revoke(ledger, "asset0", "rights holder request")
        affected = {model["id"] for model in asset_descendants(ledger, "asset0")["models"]}
        assert affected == {first.id, continued.id, scratch.id}
        tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)  # rewrites its shard without it

    after = train_generator(workspace, "ar").model
    assert after.parent is None and after.predecessor == scratch.id, "the newest model of other shards, not parent"
    assert after.init_reason == (f"from scratch, not continued from ar model {scratch.id}: its weights learned "
                                 "from assets no longer accepted: asset0 (revoked: takedown: rights holder request)")
    with Ledger(workspace.ledger_url) as ledger:
        assert "asset0" not in {row["id"] for row in model_sources(ledger, after.id)}
        assert ledger.verify().ok
